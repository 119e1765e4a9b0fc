#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Console sign-in with an external OpenID Provider, end to end: the real binary with
//! `[console.oidc]`, oidc-provider (npm, pinned in `tests/oidc`) on loopback, and a real
//! browser through the provider's own login and consent screens. A person whose email
//! is a human's lands in the console signed in as that human; a person whose email is
//! no one's is refused and gets no session; the client secret never reaches the log; a
//! sign-in started at one replica finishes at another.

use serde_json::json;

mod common;

use common::browser::Browser;
use common::free_port;
use common::oidc::OidcProvider;
use common::{Server, admin_token, created};

const CLIENT_SECRET: &str = "oidc-client-secret-never-shown-0123456789";

/// oidc-provider on 127.0.0.1:`port` with the console's client and a few accounts.
fn start_provider(port: u16, redirect_uri: &str) -> OidcProvider {
    OidcProvider::start(
        "provider.mjs",
        &[
            "--port",
            &port.to_string(),
            "--redirect-uri",
            redirect_uri,
            "--client-secret",
            CLIENT_SECRET,
            "--account",
            "alice=Alice@Example.COM",
            "--account",
            "mallory=mallory@elsewhere.example",
            "--account",
            "eve=alice@example.com",
            "--unverified",
            "eve",
        ],
    )
}

/// Through the provider's development screens: any password, then consent.
fn sign_in_at_provider(browser: &mut Browser, login: &str) {
    browser.goto("/ui/");
    browser.see("Sign in with Test IdP");
    browser.click("link", "Sign in with Test IdP");
    browser.step(json!({"do": "fill", "placeholder": "Enter any login", "value": login}));
    browser.step(json!({"do": "fill", "placeholder": "and password", "value": "whatever"}));
    browser.click("button", "Sign-in");
    browser.click("button", "Continue");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_with_an_external_openid_provider() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let secret_file = dir.path().join("oidc-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!(
            "[console.oidc]\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"mandate-console\"\n\
             client_secret_file = {:?}\ndisplay_name = \"Test IdP\"\n\
             dangerous_allow_insecure_loopback = true\n",
            secret_file.display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    let provider = start_provider(port, &format!("{}/ui/login/oidc/callback", server.url));
    assert_eq!(provider.issuer, format!("http://127.0.0.1:{port}"));
    let admin = admin_token(&data);
    created(
        &server,
        "/v1/humans",
        &admin,
        json!({"display_name": "Alice Liddell", "email": "alice@example.com"}),
    )
    .await;

    // Alice: her IdP email differs only in case from the human's.
    let mut browser = Browser::open(&server.url, "console-oidc-alice");
    sign_in_at_provider(&mut browser, "alice");
    browser.see("Hello, Alice Liddell");
    assert!(browser.url().starts_with(&format!("{}/ui/", server.url)));
    browser.goto("/ui/mandates");
    browser.see("Mandates");
    drop(browser);

    // Mallory: a real IdP account, but no human has this email.
    let mut browser = Browser::open(&server.url, "console-oidc-unknown");
    sign_in_at_provider(&mut browser, "mallory");
    browser.see("no one in this console has that email");
    browser.goto("/ui/mandates");
    browser.see("Password");
    assert!(browser.url().contains("/ui/login"), "no session");
    drop(browser);

    // Eve: the human's email, but the provider says it is not verified.
    let mut browser = Browser::open(&server.url, "console-oidc-unverified");
    sign_in_at_provider(&mut browser, "eve");
    browser.see("did not complete");
    browser.goto("/ui/");
    browser.see("Password");
    assert!(browser.url().contains("/ui/login"), "no session");
    drop(browser);

    let log = server.drain_log();
    assert!(log.contains("console sign-in"), "{log}");
    assert!(log.contains("email is not verified"), "{log}");
    assert!(
        !log.contains(CLIENT_SECRET),
        "the client secret reached the log"
    );
    server.stop();
}

/// Two replicas on one PostgreSQL database; the provider sends the browser back to the
/// public URL, which is replica B, while the sign-in started at replica A (no sticky
/// sessions): B finds the held sign-in in the store and finishes it. Nothing the flow
/// holds is in the database in the clear.
#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_started_at_one_replica_finishes_at_another() {
    let db = common::Database::create("mandate_oidc_replicas");
    let dir = tempfile::tempdir().unwrap();
    let (idp_port, b_port) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{b_port}");
    let config = dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!(
            "[console.oidc]\nissuer = \"http://127.0.0.1:{idp_port}\"\nclient_id = \"mandate-console\"\n\
             display_name = \"Test IdP\"\ndangerous_allow_insecure_loopback = true\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let flags = ["--config", config, "--database-url", db.url.as_str()];
    let env = [
        ("MANDATE_PUBLIC_URL", public.as_str()),
        ("MANDATE_CONSOLE_OIDC_CLIENT_SECRET", CLIENT_SECRET),
    ];
    let a = Server::start_with_env(&dir.path().join("a"), &flags, &env);
    let b = Server::start_on(
        &format!("127.0.0.1:{b_port}"),
        &dir.path().join("b"),
        &flags,
        &env,
    );
    let _provider = start_provider(idp_port, &format!("{public}/ui/login/oidc/callback"));
    let admin = admin_token(&dir.path().join("a"));
    created(
        &a,
        "/v1/humans",
        &admin,
        json!({"display_name": "Alice Liddell", "email": "alice@example.com"}),
    )
    .await;

    let mut browser = Browser::open(&a.url, "console-oidc-replicas");
    browser.goto("/ui/");
    browser.see("Sign in with Test IdP");
    browser.click("link", "Sign in with Test IdP");
    let held = std::process::Command::new("psql")
        .args([
            db.url.as_str(),
            "-qtAc",
            "SELECT data FROM oauth_once WHERE kind = 'console_sign_in'",
        ])
        .output()
        .unwrap();
    let held = String::from_utf8_lossy(&held.stdout).into_owned();
    assert_eq!(
        held.lines().count(),
        1,
        "A held the sign-in in the store: {held}"
    );
    for secret in ["state", "nonce", "code_verifier", "/ui/"] {
        assert!(!held.contains(secret), "`{secret}` in the clear: {held}");
    }
    browser.step(json!({"do": "fill", "placeholder": "Enter any login", "value": "alice"}));
    browser.step(json!({"do": "fill", "placeholder": "and password", "value": "whatever"}));
    browser.click("button", "Sign-in");
    browser.click("button", "Continue");
    browser.see("Hello, Alice Liddell");
    assert!(
        browser.url().starts_with(&format!("{public}/ui/")),
        "finished at B: {}",
        browser.url()
    );
    drop(browser);
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_without_a_started_sign_in_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!(
            "[console.oidc]\nissuer = \"http://127.0.0.1:{}\"\nclient_id = \"c\"\n\
             display_name = \"Test IdP\"\ndangerous_allow_insecure_loopback = true\n",
            free_port()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with_env(
        &data,
        &["--config", config.to_str().unwrap()],
        &[("MANDATE_CONSOLE_OIDC_CLIENT_SECRET", CLIENT_SECRET)],
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A forged callback (no flow cookie): the sign-in page, a message, no session.
    let response = client
        .get(format!(
            "{}/ui/login/oidc/callback?code=stolen&state=guess",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        !cookies
            .iter()
            .any(|c| c.starts_with("mandate_session=mds_")),
        "{cookies:?}"
    );
    let page = response.text().await.unwrap();
    assert!(
        page.contains("expired or was started in another browser"),
        "{page}"
    );
    // The provider is down: starting a sign-in says so, on our page.
    let response = client
        .get(format!("{}/ui/login/oidc?next=/ui/mandates", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Test IdP cannot be reached right now"),
        "{page}"
    );
    // An open redirect through `next` is not possible: it is checked like the form's.
    let login = client
        .get(format!("{}/ui/login?next=//evil.example/", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("Sign in with Test IdP"), "{login}");
    assert!(!login.contains("evil.example"), "{login}");
    server.stop();
}
