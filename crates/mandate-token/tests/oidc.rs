#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! The console's OpenID Connect relying party against hostile ID tokens, with a toy
//! provider (axum on 127.0.0.1:0) serving discovery and its keys. Time is the `now`
//! passed in.

mod common;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use mandate_jose::{Alg, SigningKey, b64url_encode};
use mandate_token::FederationOptions;
use mandate_token::oidc::{ClientAuth, OidcError, RelyingParty, RelyingPartyConfig};
use mandate_types::Secret;
use serde_json::{Value, json};

const T0: i64 = 1_750_000_000;
const CLIENT: &str = "mandate-console";
const NONCE: &str = "n-0S6_WzA2Mj";

struct Idp {
    base: String,
    jwks: Value,
    /// The ID token the token endpoint hands out for the code `good-code`.
    id_token: std::sync::Mutex<String>,
}

async fn discovery(State(p): State<Arc<Idp>>) -> Json<Value> {
    Json(json!({
        "issuer": p.base,
        "jwks_uri": format!("{}/jwks", p.base),
        "authorization_endpoint": format!("{}/auth", p.base),
        "token_endpoint": format!("{}/token", p.base),
    }))
}

async fn jwks(State(p): State<Arc<Idp>>) -> Json<Value> {
    Json(p.jwks.clone())
}

/// A token endpoint that accepts `mandate-console` / `s3cret` by Basic or in the body,
/// and the code `good-code` with the verifier `v` only.
async fn token(
    State(p): State<Arc<Idp>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> (axum::http::StatusCode, Json<Value>) {
    use base64::Engine as _;
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    let by_basic = basic.as_deref() == Some(b"mandate-console:s3cret".as_slice());
    let by_post = form.get("client_id").map(String::as_str) == Some(CLIENT)
        && form.get("client_secret").map(String::as_str) == Some("s3cret");
    let bad = |e: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": e})),
        )
    };
    if by_basic == by_post {
        return bad("invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || form.get("code").map(String::as_str) != Some("good-code")
        || form.get("code_verifier").map(String::as_str) != Some("v")
        || !form.contains_key("redirect_uri")
    {
        return bad("invalid_grant");
    }
    let id_token = p.id_token.lock().unwrap().clone();
    (
        axum::http::StatusCode::OK,
        Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token})),
    )
}

async fn idp(key: &SigningKey) -> Arc<Idp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = Arc::new(Idp {
        base: format!("http://{}", listener.local_addr().unwrap()),
        jwks: json!({"keys": [common::public_jwk(key, Some("sig"))]}),
        id_token: std::sync::Mutex::new(String::new()),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", axum::routing::post(token))
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    idp
}

fn relying_party(idp: &Idp) -> RelyingParty {
    relying_party_with(idp, ClientAuth::SecretBasic)
}

fn relying_party_with(idp: &Idp, client_auth: ClientAuth) -> RelyingParty {
    RelyingParty::new(
        RelyingPartyConfig {
            issuer: idp.base.clone(),
            client_id: CLIENT.into(),
            client_secret: Secret::new("s3cret".into()),
            redirect_uri: "http://127.0.0.1:8731/ui/login/oidc/callback".into(),
            scopes: vec!["email".into()],
            client_auth,
        },
        FederationOptions {
            dangerous_allow_insecure_loopback: true,
            ..FederationOptions::default()
        },
    )
    .unwrap()
}

fn claims(idp: &Idp) -> Value {
    json!({"iss": idp.base, "sub": "248289761001", "aud": CLIENT, "nonce": NONCE,
        "iat": T0, "exp": T0 + 300, "email": "Alice@Example.com", "email_verified": true})
}

fn refused(result: Result<impl std::fmt::Debug, OidcError>, why: &str) {
    match result {
        Err(OidcError::IdToken(m)) => assert!(m.contains(why), "{why}: {m}"),
        other => panic!("{why}: expected a refused ID token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_id_token_verifies_and_yields_its_email() {
    let key = common::key(Alg::ES256);
    let idp = idp(&key).await;
    let rp = relying_party(&idp);
    let token = common::sign(&key, json!({}), &claims(&idp));
    let verified = rp.verify_id_token(&token, NONCE, T0 + 10).await.unwrap();
    assert_eq!(verified.subject(), "248289761001");
    assert_eq!(
        verified.verified_email("email").unwrap(),
        "Alice@Example.com"
    );

    // The authorization URL carries state, nonce and an S256 challenge, never the verifier.
    let a = rp.start(T0).await.unwrap();
    let url = a.url.to_string();
    assert!(url.starts_with(&format!("{}/auth?", idp.base)), "{url}");
    let q: Vec<(String, String)> = a.url.query_pairs().into_owned().collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("response_type").as_deref(), Some("code"));
    assert_eq!(get("scope").as_deref(), Some("openid email"));
    assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(get("state").as_deref(), Some(a.state.expose().as_str()));
    assert_eq!(get("nonce").as_deref(), Some(a.nonce.expose().as_str()));
    assert_eq!(
        get("code_challenge").unwrap(),
        mandate_token::oidc::pkce_challenge(a.code_verifier.expose())
    );
    assert!(!url.contains(a.code_verifier.expose().as_str()));
    assert!(a.code_verifier.expose().len() >= 43);
}

#[tokio::test]
async fn hostile_id_tokens_are_refused() {
    let key = common::key(Alg::ES256);
    let idp = idp(&key).await;
    let rp = relying_party(&idp);
    let good = claims(&idp);
    let now = T0 + 10;
    let signed = |c: &Value| common::sign(&key, json!({}), c);
    let w = common::with;

    refused(
        rp.verify_id_token(
            &signed(&w(good.clone(), "aud", json!("another-client"))),
            NONCE,
            now,
        )
        .await,
        "aud",
    );
    refused(
        rp.verify_id_token(&signed(&good), "another-nonce", now)
            .await,
        "nonce",
    );
    refused(
        rp.verify_id_token(&signed(&w(good.clone(), "nonce", Value::Null)), NONCE, now)
            .await,
        "nonce` is missing",
    );
    refused(
        rp.verify_id_token(&signed(&good), NONCE, T0 + 3600).await,
        "expired",
    );
    refused(
        rp.verify_id_token(&signed(&w(good.clone(), "iat", Value::Null)), NONCE, now)
            .await,
        "iat",
    );
    refused(
        rp.verify_id_token(
            &signed(&w(good.clone(), "iss", json!("https://evil.example"))),
            NONCE,
            now,
        )
        .await,
        "not trusted",
    );
    refused(
        rp.verify_id_token(
            &signed(&w(good.clone(), "aud", json!([CLIENT, "someone-else"]))),
            NONCE,
            now,
        )
        .await,
        "azp",
    );
    refused(
        rp.verify_id_token(
            &signed(&w(good.clone(), "azp", json!("someone-else"))),
            NONCE,
            now,
        )
        .await,
        "azp",
    );
    // alg none, with and without a kid.
    let payload = b64url_encode(good.to_string().as_bytes());
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "none", "kid": key.kid()}),
    ] {
        let none = format!(
            "{}.{payload}.",
            b64url_encode(header.to_string().as_bytes())
        );
        refused(rp.verify_id_token(&none, NONCE, now).await, "");
    }
    // A key the provider does not publish, under its kid and under another.
    let stranger = SigningKey::generate(Alg::ES256, key.kid().to_owned()).unwrap();
    refused(
        rp.verify_id_token(&common::sign(&stranger, json!({}), &good), NONCE, now)
            .await,
        "does not verify",
    );
    let unknown = SigningKey::generate(Alg::ES256, "unknown-kid".into()).unwrap();
    refused(
        rp.verify_id_token(&common::sign(&unknown, json!({}), &good), NONCE, now)
            .await,
        "kid",
    );
    // HS256 keyed with the public key: never accepted.
    let hs = common::forge_hs256(
        common::public_jwk(&key, None).to_string().as_bytes(),
        &json!({"alg": "HS256", "kid": key.kid()}),
        &good,
    );
    refused(rp.verify_id_token(&hs, NONCE, now).await, "");
    // A payload swapped under a good signature.
    let swapped = common::swap_payload(&signed(&good), &w(good.clone(), "sub", json!("admin")));
    refused(
        rp.verify_id_token(&swapped, NONCE, now).await,
        "does not verify",
    );

    // Verified, but the provider says the email is not verified.
    let unverified = signed(&w(good.clone(), "email_verified", json!(false)));
    let token = rp.verify_id_token(&unverified, NONCE, now).await.unwrap();
    refused(token.verified_email("email"), "not verified");
    let no_email = signed(&w(good, "email", Value::Null));
    let token = rp.verify_id_token(&no_email, NONCE, now).await.unwrap();
    refused(token.verified_email("email"), "email");
}

#[tokio::test]
async fn the_code_is_redeemed_with_either_client_authentication() {
    let key = common::key(Alg::ES256);
    let idp = idp(&key).await;
    *idp.id_token.lock().unwrap() = common::sign(&key, json!({}), &claims(&idp));
    let (verifier, nonce) = (Secret::new("v".to_owned()), Secret::new(NONCE.to_owned()));
    for auth in [ClientAuth::SecretBasic, ClientAuth::SecretPost] {
        let rp = relying_party_with(&idp, auth);
        let token = rp
            .finish("good-code", &verifier, &nonce, T0 + 5)
            .await
            .unwrap();
        assert_eq!(token.subject(), "248289761001", "{auth:?}");
        // A wrong code: the provider's error code, nothing more.
        match rp.finish("stolen", &verifier, &nonce, T0 + 5).await {
            Err(OidcError::Refused(m)) => assert!(m.contains("invalid_grant"), "{m}"),
            other => panic!("{other:?}"),
        }
        // The right code with another verifier (PKCE): refused too.
        let other = Secret::new("w".to_owned());
        assert!(matches!(
            rp.finish("good-code", &other, &nonce, T0 + 5).await,
            Err(OidcError::Refused(_))
        ));
        // The provider's ID token with another browser's nonce: refused.
        let theirs = Secret::new("another-nonce".to_owned());
        assert!(matches!(
            rp.finish("good-code", &verifier, &theirs, T0 + 5).await,
            Err(OidcError::IdToken(_))
        ));
    }
}
