//! Refresh tokens of public clients (RFC 6749 §6, RFC 9700 §4.14, RFC 9449 §5): each
//! refresh is a fresh decision against the mandate as it is now and rotates the
//! refresh token; a used one coming back revokes its whole family (audited); a token
//! is bound to its client and DPoP key, dies with its mandate and with RFC 7009
//! revocation, and is never written anywhere in the clear.

use axum::body::Body;
use axum::http::{Method, Request, header};
use chrono::Duration;
use mandate_jose::{Alg, SigningKey, b64url_decode};
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::oauth_authorize::{
    Browser, PUBLIC, REDIRECT, Setup, VERIFIER, json_post, oauth_error, register,
};
use crate::support::Reply;

const RESOURCE: &str = "http://127.0.0.1:8731/mcp/fx";

pub(crate) fn claims(token: &str) -> Map<String, Value> {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64url_decode(payload).unwrap()).unwrap()
}

fn dpop_proof(s: &Setup, key: &SigningKey) -> String {
    let (Value::Object(h), Value::Object(c)) = (
        json!({"typ": "dpop+jwt", "jwk": key.public_jwk().to_public_json()}),
        json!({"jti": mandate_token::random_id("p").unwrap(), "htm": "POST",
               "htu": format!("{PUBLIC}/oauth2/token"),
               "iat": s.api.service.clock().now().timestamp()}),
    ) else {
        unreachable!()
    };
    key.sign(h, &serde_json::to_vec(&c).unwrap()).unwrap()
}

async fn form_post(s: &Setup, path: &str, fields: &[(&str, &str)], dpop: Option<String>) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(proof) = dpop {
        request = request.header("dpop", proof);
    }
    s.api.raw(request.body(Body::from(body)).unwrap()).await
}

async fn refresh(s: &Setup, client: &str, token: &str, dpop: Option<String>) -> Reply {
    form_post(
        s,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client),
        ],
        dpop,
    )
    .await
}

/// RFC 7009 by a public client: `token` and `client_id`.
async fn revoke(s: &Setup, client: &str, token: &str) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", token), ("client_id", client)])
        .finish();
    json_post(
        &s.api,
        "/oauth2/revoke",
        "application/x-www-form-urlencoded",
        body.into_bytes(),
    )
    .await
}

async fn active(s: &Setup, token: &str) -> bool {
    let auth = format!("Bearer {}", s.api.admin);
    let reply = s
        .api
        .raw(
            Request::builder()
                .method(Method::POST)
                .uri("/oauth2/introspect")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, auth)
                .body(Body::from(format!("token={token}")))
                .unwrap(),
        )
        .await;
    reply.ok(200)["active"] == json!(true)
}

/// Alice grants, the client redeems the code: (access token, refresh token).
async fn first_tokens(s: &Setup, dpop: Option<&SigningKey>) -> (String, String) {
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    let code = s.code(&mut alice).await;
    let reply = form_post(
        s,
        "/oauth2/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &s.client),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", RESOURCE),
        ],
        dpop.map(|k| dpop_proof(s, k)),
    )
    .await;
    let body = reply.ok(200);
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

fn pair(reply: &Reply) -> (String, String) {
    let body = reply.ok(200);
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn audit(s: &Setup, kind: &str) -> Vec<Value> {
    s.api
        .get(&format!("/v1/audit?type={kind}&limit=1000"), &s.api.admin)
        .await
        .ok(200)["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_refresh_is_a_fresh_decision_and_rotates_the_token() {
    let s = Setup::new().await;
    let meta = s
        .api
        .get("/.well-known/oauth-authorization-server", "")
        .await;
    assert!(
        meta.ok(200)["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("refresh_token"))
    );
    let (a0, r1) = first_tokens(&s, None).await;
    assert!(r1.starts_with("mrt_") && r1.len() >= 40, "{r1}");
    let first = claims(&a0);

    // The access token expired: the refresh gives a new one and a new refresh token.
    s.api.clock.advance(Duration::minutes(6));
    let reply = refresh(&s, &s.client, &r1, None).await;
    assert_eq!(
        reply.headers.get(header::CACHE_CONTROL).unwrap(),
        "no-store"
    );
    let (a1, r2) = pair(&reply);
    assert_ne!(r1, r2);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["scope"], "fx.echo");
    let next = claims(&a1);
    assert_ne!(next["jti"], first["jti"]);
    for same in ["sub", "act", "mandate", "aud", "scope"] {
        assert_eq!(next[same], first[same], "{same}");
    }
    assert!(next["exp"].as_i64().unwrap() > first["exp"].as_i64().unwrap());
    assert!(active(&s, &a1).await);

    // A refresh may narrow the scope, never widen it; a refused one leaves the token.
    let wider = form_post(
        &s,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("client_id", &s.client),
            ("scope", "fx.echo fx.wipe"),
        ],
        None,
    )
    .await;
    oauth_error(&wider, 400, "invalid_scope");
    let other_resource = form_post(
        &s,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("client_id", &s.client),
            ("resource", "http://127.0.0.1:8731/proxy"),
        ],
        None,
    )
    .await;
    oauth_error(&other_resource, 400, "invalid_target");
    let (_, r3) = pair(&refresh(&s, &s.client, &r2, None).await);

    // Recorded as renewals of the family, with no refresh token in the ledger.
    let renewed = audit(&s, "token.renewed").await;
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    assert!(
        renewed
            .iter()
            .all(|e| e["data"]["grant_type"] == "refresh_token"
                && e["data"]["refresh_family"] == first["jti"])
    );
    let everything = s
        .api
        .get("/v1/audit?limit=1000", &s.api.admin)
        .await
        .ok(200)
        .to_string();
    for token in [&r1, &r2, &r3] {
        assert!(!everything.contains(token.as_str()));
    }
    // The store holds the SHA-256 of a refresh token, never the token.
    let store = s.api.service.store();
    let kind = mandate_store::OnceKind::RefreshToken;
    let hash: String = sha2::Sha256::digest(r3.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let record = store.once(kind, &hash).await.unwrap().unwrap();
    assert!(record.used_at.is_none());
    assert!(!record.data.contains(&r3));
    assert!(store.once(kind, &r3).await.unwrap().is_none());
}

#[tokio::test]
async fn a_used_refresh_token_revokes_its_whole_family_and_is_audited() {
    let s = Setup::new().await;
    let (a0, r1) = first_tokens(&s, None).await;
    let (a1, r2) = pair(&refresh(&s, &s.client, &r1, None).await);
    // Someone replays r1: refused, and every token of the family dies.
    let replay = refresh(&s, &s.client, &r1, None).await;
    let why = replay.body["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    oauth_error(&replay, 400, "invalid_grant");
    assert!(why.contains("used before"), "{why}");
    assert!(!active(&s, &a0).await);
    assert!(!active(&s, &a1).await);
    oauth_error(
        &refresh(&s, &s.client, &r2, None).await,
        400,
        "invalid_grant",
    );
    let revoked = audit(&s, "token.revoked").await;
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    let event = &revoked[0];
    assert_eq!(event["data"]["reason"], "refresh token used twice");
    let mut named: Vec<String> = event["data"]["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    named.sort_unstable();
    let mut expected = vec![
        claims(&a0)["jti"].as_str().unwrap().to_owned(),
        claims(&a1)["jti"].as_str().unwrap().to_owned(),
    ];
    expected.sort_unstable();
    assert_eq!(named, expected);
    // The mandate itself stays: Alice can authorize the client again.
    let mandate = claims(&a0)["mandate"].as_str().unwrap().to_owned();
    let view = s
        .api
        .get(&format!("/v1/mandates/{mandate}"), &s.api.admin)
        .await;
    assert_eq!(view.ok(200)["status"], "active");
}

#[tokio::test]
async fn a_refresh_token_is_bound_to_its_client_and_dpop_key() {
    let s = Setup::new().await;
    let (_, r1) = first_tokens(&s, None).await;
    // Another client presenting it is refused, and the token stays its holder's.
    let other = register(&s.api, &json!({"redirect_uris": [REDIRECT]}))
        .await
        .ok(201)["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    oauth_error(&refresh(&s, &other, &r1, None).await, 400, "invalid_grant");
    // With a client assertion instead of a public client_id: refused.
    let asserted = form_post(
        &s,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", &s.client),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "x.y.z"),
        ],
        None,
    )
    .await;
    oauth_error(&asserted, 401, "invalid_client");
    oauth_error(
        &refresh(&s, &s.client, "mrt_made-up", None).await,
        400,
        "invalid_grant",
    );
    let missing = form_post(
        &s,
        "/oauth2/token",
        &[("grant_type", "refresh_token"), ("client_id", &s.client)],
        None,
    )
    .await;
    oauth_error(&missing, 400, "invalid_request");
    refresh(&s, &s.client, &r1, None).await.ok(200);

    // Obtained with DPoP: bound to that key.
    let key = SigningKey::generate(Alg::ES256, "dpop".into()).unwrap();
    let stranger = SigningKey::generate(Alg::ES256, "other".into()).unwrap();
    let (a0, r1) = first_tokens(&s, Some(&key)).await;
    assert_eq!(claims(&a0)["cnf"]["jkt"], key.public_jwk().thumbprint());
    oauth_error(
        &refresh(&s, &s.client, &r1, None).await,
        400,
        "invalid_grant",
    );
    oauth_error(
        &refresh(&s, &s.client, &r1, Some(dpop_proof(&s, &stranger))).await,
        400,
        "invalid_grant",
    );
    let reply = refresh(&s, &s.client, &r1, Some(dpop_proof(&s, &key))).await;
    let (a1, r2) = pair(&reply);
    assert_eq!(reply.body["token_type"], "DPoP");
    assert_eq!(claims(&a1)["cnf"]["jkt"], key.public_jwk().thumbprint());
    // The rotated token keeps the binding.
    oauth_error(
        &refresh(&s, &s.client, &r2, None).await,
        400,
        "invalid_grant",
    );
    refresh(&s, &s.client, &r2, Some(dpop_proof(&s, &key)))
        .await
        .ok(200);
}

#[tokio::test]
async fn a_refresh_token_dies_with_its_mandate_and_by_revocation() {
    let s = Setup::new().await;
    // The mandate revoked (by an admin here): refused.
    let (a0, r1) = first_tokens(&s, None).await;
    let mandate = claims(&a0)["mandate"].as_str().unwrap().to_owned();
    s.api
        .post(
            &format!("/v1/mandates/{mandate}/revoke"),
            &s.api.admin,
            &json!({"reason": "done"}),
        )
        .await
        .ok(200);
    oauth_error(
        &refresh(&s, &s.client, &r1, None).await,
        400,
        "invalid_grant",
    );

    // The mandate expired (60 minutes): refused.
    let (_, r1) = first_tokens(&s, None).await;
    let (_, r2) = pair(&refresh(&s, &s.client, &r1, None).await);
    s.api.clock.advance(Duration::minutes(61));
    let expired = refresh(&s, &s.client, &r2, None).await;
    oauth_error(&expired, 400, "invalid_grant");

    // RFC 7009: the client revokes its refresh token; another client cannot.
    let (a0, r1) = first_tokens(&s, None).await;
    let other = register(&s.api, &json!({"redirect_uris": [REDIRECT]}))
        .await
        .ok(201)["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    revoke(&s, &other, &r1).await.ok(200);
    let (a1, r2) = pair(&refresh(&s, &s.client, &r1, None).await);
    revoke(&s, &s.client, &r2).await.ok(200);
    oauth_error(
        &refresh(&s, &s.client, &r2, None).await,
        400,
        "invalid_grant",
    );
    assert!(!active(&s, &a0).await);
    assert!(!active(&s, &a1).await);
    let revoked = audit(&s, "token.revoked").await;
    assert!(
        revoked.iter().any(|e| e["data"]["refresh_token"] == true
            && e["actor"]
                .to_string()
                .contains(&format!("client:{}", s.client))),
        "{revoked:?}"
    );
}

#[tokio::test]
async fn a_refresh_the_policies_no_longer_allow_is_refused() {
    let s = Setup::new().await;
    let (_, r1) = first_tokens(&s, None).await;
    let (_, r2) = pair(&refresh(&s, &s.client, &r1, None).await);
    // The operator forbids issuing tokens under mandates: never a blind refresh.
    let forbid = json!({"policies": [{"name": "stop.cedar",
        "text": "forbid (principal, action == Mandate::Action::\"exchange_token\", resource);"}]});
    s.api
        .send(
            Method::PUT,
            "/v1/policies",
            Some(&s.api.admin),
            Some(&forbid),
        )
        .await
        .ok(200);
    let refused = refresh(&s, &s.client, &r2, None).await;
    oauth_error(&refused, 400, "invalid_grant");
    let why = refused.body["error_description"].as_str().unwrap();
    assert!(why.contains("no longer allows"), "{why}");
}

async fn second_replica(s: &Setup) -> mandate_core::TokenService {
    s.api.second_token_service(PUBLIC).await
}

fn refresh_request(client: &str, token: &str) -> mandate_core::TokenRequest {
    mandate_core::TokenRequest {
        grant_type: "refresh_token".into(),
        client_id: Some(client.into()),
        refresh_token: Some(token.into()),
        ..mandate_core::TokenRequest::default()
    }
}

#[tokio::test]
async fn what_one_replica_did_to_a_refresh_token_holds_on_another() {
    let s = Setup::new().await;
    let b = second_replica(&s).await;
    // Rotated on replica B: replica A refuses the old token as a reuse, and the family
    // it revokes is refused on B as well.
    let (_, r1) = first_tokens(&s, None).await;
    let on_b = b.token(&refresh_request(&s.client, &r1)).await.unwrap();
    let r2 = on_b.refresh_token.unwrap();
    oauth_error(
        &refresh(&s, &s.client, &r1, None).await,
        400,
        "invalid_grant",
    );
    let err = b.token(&refresh_request(&s.client, &r2)).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err:?}");
    // Revoked (RFC 7009) on replica A: refused on replica B.
    let (_, r1) = first_tokens(&s, None).await;
    revoke(&s, &s.client, &r1).await.ok(200);
    let err = b.token(&refresh_request(&s.client, &r1)).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err:?}");
}

/// A replica whose revocation list could not be kept current (here: no poller runs, as
/// when its database connections were cut) reads it again before it trusts it: a token
/// revoked elsewhere is refused once the list's bound (a second) has passed, never
/// served from the stale list.
#[tokio::test]
async fn a_replica_reads_revocations_again_before_trusting_a_stale_list() {
    let s = Setup::new().await;
    let b = second_replica(&s).await;
    let (access, _) = first_tokens(&s, None).await;
    let aud = &claims(&access)["aud"];
    let audience = aud
        .as_str()
        .or_else(|| aud[0].as_str())
        .unwrap_or_else(|| panic!("aud: {aud}"))
        .to_owned();
    let presented = mandate_core::Presented {
        token: &access,
        dpop_scheme: false,
        proof: None,
        method: "POST",
        url: &audience,
        audience: &audience,
    };
    b.verify_access(&presented).await.unwrap();
    // Revoked on replica A (RFC 7009, by an admin); B hears nothing of it.
    let auth = format!("Bearer {}", s.api.admin);
    s.api
        .raw(
            Request::builder()
                .method(Method::POST)
                .uri("/oauth2/revoke")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, auth)
                .body(Body::from(format!("token={access}")))
                .unwrap(),
        )
        .await
        .ok(200);
    assert!(!active(&s, &access).await);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let err = b.verify_access(&presented).await.unwrap_err();
    assert_eq!(err.code(), "invalid_token", "{err:?}");
}

/// With `require_dpop` on, agents' grants need a proof, but an interactive client's
/// code and refresh grants need one only when the client registered
/// `dpop_bound_access_tokens` (RFC 9449 §5.2): the common MCP client libraries send no
/// proof at the token endpoint. The refusal says which rule applies.
#[tokio::test]
async fn dpop_at_the_token_endpoint_is_the_clients_registration() {
    let api = crate::support::Api::with_tokens_as(|c| c.require_dpop = true, |t| t).await;
    let mut s = Setup::on(api).await;
    // A client registered without it: redeems and refreshes without a proof.
    let (access, r1) = first_tokens(&s, None).await;
    assert!(claims(&access).get("cnf").is_none());
    let reply = refresh(&s, &s.client, &r1, None).await;
    assert_eq!(reply.ok(200)["token_type"], "Bearer");

    oauth_error(
        &register(
            &s.api,
            &json!({"redirect_uris": [REDIRECT], "dpop_bound_access_tokens": "yes"}),
        )
        .await,
        400,
        "invalid_client_metadata",
    );
    let bound = register(
        &s.api,
        &json!({"client_name": "Bound", "redirect_uris": [REDIRECT],
                "dpop_bound_access_tokens": true}),
    )
    .await;
    let bound = bound.ok(201).clone();
    assert_eq!(bound["dpop_bound_access_tokens"], true);
    s.client = bound["client_id"].as_str().unwrap().to_owned();

    // Registered with it: a redemption without a proof is refused and says why.
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    let code = s.code(&mut alice).await;
    let refused = s.redeem_code(&code).await;
    oauth_error(&refused, 400, "invalid_dpop_proof");
    let why = refused.body["error_description"].as_str().unwrap();
    assert!(why.contains("dpop_bound_access_tokens"), "{why}");
    // With a proof: a DPoP-bound token, and its refresh token needs the key too.
    let key = SigningKey::generate(Alg::ES256, "dpop".into()).unwrap();
    let (access, r1) = first_tokens(&s, Some(&key)).await;
    assert!(claims(&access)["cnf"]["jkt"].is_string());
    oauth_error(
        &refresh(&s, &s.client, &r1, None).await,
        400,
        "invalid_grant",
    );
    let reply = refresh(&s, &s.client, &r1, Some(dpop_proof(&s, &key))).await;
    assert_eq!(reply.ok(200)["token_type"], "DPoP");
}

/// Replica B verifies tokens signed by keys it has not seen (replica A rotated twice
/// after B started): two arriving together both pass, though only one read of the
/// published keys is made for them, and so does one signed by a key published just
/// after that read. A key nobody published is refused.
#[tokio::test]
async fn a_replica_learns_keys_published_after_it_started_without_refusing_any_token() {
    let s = Setup::new().await;
    let b = second_replica(&s).await;
    let a = s.api.service.tokens().unwrap().clone();
    let rotate_and_issue = |kid: &'static str| {
        let a = a.clone();
        let s = &s;
        async move {
            a.rotate(SigningKey::generate(Alg::EdDSA, kid.into()).unwrap())
                .await
                .unwrap();
            first_tokens(s, None).await.0
        }
    };
    let mut issued = vec![rotate_and_issue("a-2").await, rotate_and_issue("a-3").await];
    let verify = |token: &str| {
        let aud = &claims(token)["aud"];
        let audience = aud.as_str().or_else(|| aud[0].as_str()).unwrap().to_owned();
        let token = token.to_owned();
        let b = &b;
        async move {
            let presented = mandate_core::Presented {
                token: &token,
                dpop_scheme: false,
                proof: None,
                method: "POST",
                url: &audience,
                audience: &audience,
            };
            b.verify_access(&presented).await
        }
    };
    let (second, third) = tokio::join!(verify(&issued[0]), verify(&issued[1]));
    second.unwrap();
    third.unwrap();
    issued.push(rotate_and_issue("a-4").await);
    verify(&issued[2]).await.unwrap();

    let forged = SigningKey::generate(Alg::EdDSA, "nobody".into()).unwrap();
    let (Value::Object(h), Value::Object(c)) = (
        json!({"typ": "at+jwt"}),
        serde_json::to_value(claims(&issued[2])).unwrap(),
    ) else {
        unreachable!()
    };
    let forged = forged.sign(h, &serde_json::to_vec(&c).unwrap()).unwrap();
    let err = verify(&forged).await.unwrap_err();
    assert_eq!(err.code(), "invalid_token", "{err:?}");
    assert!(format!("{err:?}").contains("not signed by a key of this issuer"));
}
