#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Enterprise-managed authorization end to end with the real binary: two `mandate
//! serve` replicas on one PostgreSQL database, configured by `[[tokens.enterprise_idp]]`
//! (a `subjects` table naming the person) to trust an IdP whose JWK Set this test
//! serves on loopback and whose private key it holds. An ID-JAG presented at one
//! replica grants a task token under the person's mandate; the same ID-JAG at the other
//! replica is refused (its `jti` is claimed in the shared store); neither log holds it.

use serde_json::{Map, Value, json};

mod common;

use common::{JWT_BEARER, Server};

const PUBLIC_URL: &str = "http://mandate.idjag.test";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

async fn token_request(server: &Server, form: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/oauth2/token", server.url))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_jag_grants_under_the_mandate_once_across_replicas() {
    // The enterprise IdP: a JWK Set on loopback, its private key here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = format!("http://{}", listener.local_addr().unwrap());
    let idp_key =
        mandate_jose::SigningKey::generate(mandate_jose::Alg::ES256, "e1".into()).unwrap();
    let jwks = json!({"keys": [idp_key.public_jwk().to_public_json()]});
    let app = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = common::Database::create("mandate_idjag");
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("MANDATE_PUBLIC_URL", PUBLIC_URL)];
    let flags = ["--database-url", db.url.as_str()];
    // Alice, her agent and her consented mandate, made before the IdP is configured
    // (its `clients` names the agent).
    let first = Server::start_with_env(dirs.0.path(), &flags, &env);
    let admin = common::admin_token(dirs.0.path());
    let who = common::human_and_agent(&first, &admin).await;
    let mandate = common::consented_mandate(
        &first,
        &admin,
        &who,
        json!({"intent": "read the reports",
               "scope": {"tools": [{"tool": "reports.read"}, {"tool": "reports.share"}]},
               "data_ceiling": "internal", "mode": "execute"}),
    )
    .await;
    first.stop();

    let config = dirs.0.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!(
            "[[tokens.enterprise_idp]]\nissuer = \"{idp}\"\njwks_uri = \"{idp}/keys\"\n\
             person = \"subjects\"\nclients = [\"{}\"]\ndangerous_allow_insecure_loopback = true\n\
             [tokens.enterprise_idp.subjects]\n\"00u-alice\" = \"Alice@Example.com\"\n",
            who.agent
        ),
    )
    .unwrap();
    let mut flags = flags.to_vec();
    flags.extend(["--config", config.to_str().unwrap()]);
    let (mut a, mut b) = std::thread::scope(|s| {
        let a = s.spawn(|| Server::start_with_env(dirs.0.path(), &flags, &env));
        let b = s.spawn(|| Server::start_with_env(dirs.1.path(), &flags, &env));
        (a.join().unwrap(), b.join().unwrap())
    });

    let metadata: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(GRANT)),
        "{metadata}"
    );

    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": idp, "sub": "00u-alice", "aud": PUBLIC_URL,
        "client_id": who.agent, "jti": format!("jag-{}", std::process::id()),
        "exp": now + 120, "iat": now, "resource": format!("{PUBLIC_URL}/mcp"),
        "scope": "reports.read calendar.write"});
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    let mut header = Map::new();
    header.insert("typ".into(), json!("oauth-id-jag+jwt"));
    header.insert("kid".into(), json!("e1"));
    let jag = idp_key
        .sign(header, &serde_json::to_vec(&claims).unwrap())
        .unwrap();
    let present = |server: &Server| {
        let client = common::assertion(PUBLIC_URL, &who.agent, &who.key);
        let form = [
            ("grant_type", GRANT.to_owned()),
            ("client_assertion_type", JWT_BEARER.to_owned()),
            ("client_assertion", client),
            ("assertion", jag.clone()),
        ];
        let url = server.url.clone();
        async move { token_request_owned(&url, &form).await }
    };
    let (status, body) = present(&a).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["scope"], "reports.read",
        "narrowed by the ID-JAG's scope"
    );
    granted_under(&body, &who.human, &mandate);

    let (status, body) = present(&b).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("used before"),
        "{body}"
    );
    // A client that is neither an authenticated agent nor a registered public client.
    let (status, body) = token_request(
        &a,
        &[
            ("grant_type", GRANT),
            ("client_id", "mcl_nobody"),
            ("assertion", "a.b.c"),
        ],
    )
    .await;
    assert_eq!(status, 401, "{body}");

    let signature = jag.rsplit('.').next().unwrap();
    for log in [a.drain_log(), b.drain_log()] {
        assert!(!log.contains(signature), "an ID-JAG in the log");
    }
}

/// The IdP is a real one: oidc-provider (npm, pinned in `tests/oidc`, `idp_jag.mjs`)
/// with its own key published at its `/jwks`, issuing ID-JAGs by token exchange of the
/// person's ID token as the draft describes. The MCP client asks it for an ID-JAG for
/// Mandate and presents that: a task token under the person's mandate, the scope
/// narrowed; the same ID-JAG again is refused; one the IdP issued for another resource
/// is refused; an ID token is not an ID-JAG.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_jag_from_an_oidc_provider_grants_under_the_mandate_once() {
    const CLIENT_SECRET: &str = "idp-client-secret-PLANTED-5e0b";
    let dir = tempfile::tempdir().unwrap();
    let env = [("MANDATE_PUBLIC_URL", PUBLIC_URL)];
    let first = Server::start_with_env(dir.path(), &[], &env);
    let admin = common::admin_token(dir.path());
    let who = common::human_and_agent(&first, &admin).await;
    let mandate = common::consented_mandate(
        &first,
        &admin,
        &who,
        json!({"intent": "read the reports", "scope": {"tools": [{"tool": "reports.read"}]},
               "data_ceiling": "internal", "mode": "execute"}),
    )
    .await;
    first.stop();

    let idp = common::oidc::OidcProvider::start(
        "idp_jag.mjs",
        &[
            "--client-id",
            &who.agent,
            "--client-secret",
            CLIENT_SECRET,
            "--account",
            "00u-alice",
        ],
    );
    let config = dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!(
            "[[tokens.enterprise_idp]]\nissuer = \"{0}\"\njwks_uri = \"{0}/jwks\"\n\
             person = \"subjects\"\nclients = [\"{1}\"]\ndangerous_allow_insecure_loopback = true\n\
             [tokens.enterprise_idp.subjects]\n\"00u-alice\" = \"alice@example.com\"\n",
            idp.issuer, who.agent
        ),
    )
    .unwrap();
    let mut server =
        Server::start_with_env(dir.path(), &["--config", config.to_str().unwrap()], &env);

    // The client at the IdP: the person's ID token (their single sign-on), exchanged
    // for an ID-JAG naming Mandate (RFC 8693, requested_token_type id-jag).
    let http = reqwest::Client::new();
    let id_jag = |resource: &'static str| {
        let (http, issuer, agent) = (http.clone(), idp.issuer.clone(), who.agent.clone());
        async move {
            let sso: Value = http
                .get(format!("{issuer}/test/id_token?sub=00u-alice"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let answer = http
                .post(format!("{issuer}/token"))
                .basic_auth(&agent, Some(CLIENT_SECRET))
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:id-jag",
                    ),
                    (
                        "subject_token_type",
                        "urn:ietf:params:oauth:token-type:id_token",
                    ),
                    ("subject_token", sso["id_token"].as_str().unwrap()),
                    ("audience", PUBLIC_URL),
                    ("resource", resource),
                    ("scope", "reports.read calendar.write"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            let answer: Value = answer.json().await.unwrap();
            assert_eq!(
                answer["issued_token_type"],
                "urn:ietf:params:oauth:token-type:id-jag"
            );
            (
                answer["access_token"].as_str().unwrap().to_owned(),
                sso["id_token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let present = |assertion: String| {
        let client = common::assertion(PUBLIC_URL, &who.agent, &who.key);
        let url = server.url.clone();
        async move {
            token_request_owned(
                &url,
                &[
                    ("grant_type", GRANT.to_owned()),
                    ("client_assertion_type", JWT_BEARER.to_owned()),
                    ("client_assertion", client),
                    ("assertion", assertion),
                ],
            )
            .await
        }
    };

    let (jag, id_token) = id_jag("http://mandate.idjag.test/mcp").await;
    let (status, body) = present(jag.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "reports.read", "narrowed by the mandate");
    granted_under(&body, &who.human, &mandate);

    // Once only.
    let (status, body) = present(jag.clone()).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_grant")),
        "{body}"
    );
    // The IdP's ID-JAG for another resource, and the ID token itself, are refused.
    let (elsewhere, _) = id_jag("https://mcp.elsewhere.example/mcp").await;
    let (status, body) = present(elsewhere).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_target")),
        "{body}"
    );
    let (status, body) = present(id_token).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_grant")),
        "{body}"
    );

    let signature = jag.rsplit('.').next().unwrap();
    let log = server.drain_log();
    assert!(!log.contains(signature), "an ID-JAG in the log");
    assert!(!log.contains(CLIENT_SECRET));
}

async fn token_request_owned(url: &str, form: &[(&str, String)]) -> (u16, Value) {
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = reqwest::Client::new()
        .post(format!("{url}/oauth2/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The task token in a token response is the person's, under that mandate.
fn granted_under(body: &Value, human: &str, mandate: &str) {
    let payload = body["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let token: Value =
        serde_json::from_slice(&mandate_jose::b64url_decode(payload).unwrap()).unwrap();
    assert_eq!(token["sub"], human);
    assert_eq!(token["authorization_details"][0]["mandate_id"], mandate);
}
