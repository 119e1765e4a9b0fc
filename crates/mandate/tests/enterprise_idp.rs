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
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = reqwest::Client::new()
                .post(format!("{url}/oauth2/token"))
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = present(&a).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["scope"], "reports.read",
        "narrowed by the ID-JAG's scope"
    );
    let payload = body["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let token: Value =
        serde_json::from_slice(&mandate_jose::b64url_decode(payload).unwrap()).unwrap();
    assert_eq!(token["sub"], who.human.as_str());
    assert_eq!(
        token["authorization_details"][0]["mandate_id"],
        mandate.as_str()
    );

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
