// Enterprise-managed authorization: an ID-JAG (draft-ietf-oauth-identity-assertion-
// authz-grant) from an enterprise IdP whose JWK Set a loopback HTTP server of this test
// serves (the test holds the private key), presented at /oauth2/token with the
// jwt-bearer grant, over HTTP, to token services on one real SQLite store. Each hostile
// ID-JAG is its own test.

use std::sync::Arc;

use axum::routing::get;
use chrono::Duration;
use mandate_jose::{Alg, SigningKey, b64url_encode};
use serde_json::{Value, json};

use crate::oauth_authorize::{Browser, Setup as Authorize};
use crate::support::{Api, Reply};
use crate::tokens::{BEARER, Setup, claims, now, oauth_error, sign};

const ISSUER: &str = mandate_server::DEFAULT_PUBLIC_URL;
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The enterprise IdP: its issuer URL and signing key; its JWK Set is served.
struct Idp {
    issuer: String,
    key: SigningKey,
}

impl Idp {
    async fn start() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let key = SigningKey::generate(Alg::ES256, "idp-1".into()).unwrap();
        let jwks = json!({"keys": [key.public_jwk().to_public_json()]});
        let app = axum::Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Idp { issuer, key }
    }
}

/// Setup's people, agents and Alice's mandate for agent 0 (flights.search,
/// flights.book, hotels.*), behind a token service that trusts `idp` for agents 0 and
/// 1 (not 2 or 3).
struct Enterprise {
    s: Setup,
    idp: Idp,
    mandate: String,
}

impl Enterprise {
    async fn new() -> Enterprise {
        let mut s = Setup::new().await;
        let idp = Idp::start().await;
        let mandate = s.mandate().await;
        let clients = vec![s.agents[0].id.clone(), s.agents[1].id.clone()];
        let replica = replica(&s.api, &idp, clients).await;
        mount(&mut s.api, replica);
        Enterprise { s, idp, mandate }
    }

    /// Claims of a good ID-JAG for agent 0 about Alice.
    fn claims(&self) -> Value {
        let t = now(&self.s.api);
        json!({
            "iss": self.idp.issuer, "sub": "00u-alice", "aud": ISSUER,
            "client_id": self.s.agents[0].id, "jti": mandate_token::random_id("jag").unwrap(),
            "exp": t + 300, "iat": t, "resource": format!("{ISSUER}/mcp"),
            "scope": "flights.search flights.book hotels.* openid",
            "email": "alice@example.com",
        })
    }

    fn jag(&self, claims: Value) -> String {
        sign(
            &self.idp.key,
            json!({"typ": "oauth-id-jag+jwt", "kid": "idp-1"}),
            claims,
        )
    }

    /// The jwt-bearer grant by `agent` (its own private_key_jwt) with `assertion`.
    async fn present(&self, agent: usize, assertion: &str, extra: &[(&str, &str)]) -> Reply {
        let client = self
            .s
            .assertion(agent, &mandate_token::random_id("c").unwrap());
        let mut params = vec![
            ("grant_type", GRANT),
            ("client_assertion_type", BEARER),
            ("client_assertion", client.as_str()),
            ("assertion", assertion),
        ];
        params.extend_from_slice(extra);
        self.s.form("/oauth2/token", &params, &[]).await
    }

    /// Agent 0 presents an ID-JAG with these claims changed, and is refused.
    async fn refuses(&self, changes: Value, code: &str, says: &str) {
        refused(&self.present_with(changes).await, code, says);
    }

    /// Agent 0 presents an ID-JAG with these claims changed.
    async fn present_with(&self, changes: Value) -> Reply {
        let mut c = self.claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        self.present(0, &self.jag(c), &[]).await
    }
}

/// Serves `api` with `tokens` as its token service.
fn mount(api: &mut Api, tokens: mandate_core::TokenService) {
    api.app = mandate_server::app_with_gateway(
        api.service.clone().with_tokens(Arc::new(tokens)),
        mandate_server::Metrics::new("sqlite"),
        ISSUER,
        None,
    );
}

/// A token service on the api's store (its own ledger writer and key, like another
/// replica) that accepts the IdP's ID-JAGs for `clients`.
async fn replica(api: &Api, idp: &Idp, clients: Vec<String>) -> mandate_core::TokenService {
    let idps = mandate_token::EnterpriseIdps::new(
        vec![mandate_token::EnterpriseIdp {
            issuer: idp.issuer.clone(),
            jwks_uri: Some(format!("{}/jwks", idp.issuer)),
            tenant: "default".into(),
            person: mandate_token::PersonMapping::EmailClaim,
            clients,
            dangerous_allow_insecure_loopback: true,
        }],
        ISSUER,
    )
    .unwrap();
    api.second_token_service(ISSUER)
        .await
        .with_enterprise_idps(idps)
}

#[track_caller]
fn refused(reply: &Reply, code: &str, says: &str) {
    let why = oauth_error(
        reply,
        if code == "invalid_client" { 401 } else { 400 },
        code,
    );
    assert!(why.contains(says), "{why:?} should say {says:?}");
}

#[tokio::test]
async fn an_id_jag_grants_a_task_token_under_the_persons_mandate_only() {
    let e = Enterprise::new().await;
    let meta =
        e.s.api
            .send(
                axum::http::Method::GET,
                "/.well-known/oauth-authorization-server",
                None,
                None,
            )
            .await;
    assert!(
        meta.ok(200)["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(GRANT)),
        "{}",
        meta.body
    );
    let jag = e.jag(e.claims());
    let reply = e.present(0, &jag, &[]).await;
    let body = reply.ok(200).clone();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("refresh_token").is_none(), "no refresh token");
    assert_eq!(body["scope"], "flights.search flights.book hotels.*");
    let (header, c) = claims(body["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(c["act"], json!({"sub": e.s.agents[0].id}));
    assert_eq!(c["sub"], e.s.alice.as_str());
    assert_eq!(c["aud"], json!([format!("{ISSUER}/mcp")]));
    assert_eq!(
        c["authorization_details"][0]["mandate_id"],
        e.mandate.as_str()
    );
    // Audited like the other grants, under the mandate; the assertion never is.
    let page =
        e.s.api
            .get("/v1/audit?type=token.issued&limit=100", &e.s.api.admin)
            .await
            .ok(200)
            .clone();
    let events = page["items"].as_array().unwrap();
    let event = events
        .iter()
        .find(|ev| ev["data"]["grant_type"] == GRANT)
        .unwrap_or_else(|| panic!("no jwt-bearer token.issued: {page}"));
    assert_eq!(event["mandate_id"], e.mandate.as_str());
    assert_eq!(event["data"]["id_jag_iss"], e.idp.issuer.as_str());
    let signature = jag.rsplit('.').next().unwrap();
    assert!(
        !page.to_string().contains(signature),
        "the ID-JAG is never audited"
    );
}

#[tokio::test]
async fn a_replayed_id_jag_is_refused_on_every_replica() {
    let e = Enterprise::new().await;
    let jag = e.jag(e.claims());
    e.present(0, &jag, &[]).await.ok(200);
    refused(
        &e.present(0, &jag, &[]).await,
        "invalid_grant",
        "used before",
    );
    // Another replica (its own memory, the same store) refuses it as well.
    let clients = vec![e.s.agents[0].id.clone()];
    let other = replica(&e.s.api, &e.idp, clients).await;
    let request = mandate_core::TokenRequest {
        grant_type: GRANT.into(),
        client_assertion_type: Some(BEARER.into()),
        client_assertion: Some(e.s.assertion(0, "other-replica")),
        assertion: Some(jag),
        ..mandate_core::TokenRequest::default()
    };
    let err = other.token(&request).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant", "{err}");
    assert!(err.description().contains("used before"), "{err}");
}

#[tokio::test]
async fn an_id_jag_of_a_foreign_issuer_is_refused() {
    let e = Enterprise::new().await;
    e.refuses(
        json!({"iss": "https://idp.elsewhere.example"}),
        "invalid_grant",
        "not a trusted enterprise identity provider",
    )
    .await;
}

#[tokio::test]
async fn an_id_jag_signed_by_a_key_not_in_the_jwks_is_refused_before_its_claims_are_read() {
    let e = Enterprise::new().await;
    // Claims that would be refused for themselves too (another client): the signature
    // is what the refusal names, so no claim was looked at first.
    let mut c = e.claims();
    c["client_id"] = json!(e.s.agents[1].id);
    let forger = SigningKey::generate(Alg::ES256, "idp-1".into()).unwrap();
    let forged = sign(
        &forger,
        json!({"typ": "oauth-id-jag+jwt", "kid": "idp-1"}),
        c.clone(),
    );
    refused(
        &e.present(0, &forged, &[]).await,
        "invalid_grant",
        "does not verify",
    );
    let unknown = SigningKey::generate(Alg::ES256, "idp-9".into()).unwrap();
    let other_kid = sign(
        &unknown,
        json!({"typ": "oauth-id-jag+jwt", "kid": "idp-9"}),
        c,
    );
    refused(&e.present(0, &other_kid, &[]).await, "invalid_grant", "kid");
    // The genuine one with a flipped signature byte.
    let good = e.jag(e.claims());
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut bytes = mandate_jose::b64url_decode(sig).unwrap();
    bytes[0] ^= 1;
    let tampered = format!("{head}.{}", b64url_encode(&bytes));
    refused(
        &e.present(0, &tampered, &[]).await,
        "invalid_grant",
        "does not verify",
    );
}

#[tokio::test]
async fn an_unsigned_id_jag_alg_none_is_refused() {
    let e = Enterprise::new().await;
    let header = b64url_encode(
        json!({"alg": "none", "typ": "oauth-id-jag+jwt", "kid": "idp-1"})
            .to_string()
            .as_bytes(),
    );
    let payload = b64url_encode(e.claims().to_string().as_bytes());
    for unsigned in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let reply = e.present(0, &unsigned, &[]).await;
        assert_eq!(reply.status.as_u16(), 400, "{}", reply.body);
        assert_eq!(reply.body["error"], "invalid_grant", "{}", reply.body);
    }
}

#[tokio::test]
async fn an_id_jag_of_another_type_is_refused() {
    let e = Enterprise::new().await;
    for header in [
        json!({"typ": "JWT", "kid": "idp-1"}),
        json!({"typ": "at+jwt", "kid": "idp-1"}),
        json!({"kid": "idp-1"}),
    ] {
        let token = sign(&e.idp.key, header.clone(), e.claims());
        refused(&e.present(0, &token, &[]).await, "invalid_grant", "typ");
    }
}

#[tokio::test]
async fn an_id_jag_for_another_resource_or_audience_is_refused() {
    let e = Enterprise::new().await;
    e.refuses(
        json!({"resource": "https://mcp.elsewhere.example/mcp"}),
        "invalid_target",
        "does not issue tokens for",
    )
    .await;
    e.refuses(
        json!({"resource": format!("{ISSUER}/mcp/no-such-server")}),
        "invalid_target",
        "no tool server",
    )
    .await;
    // A resource asked for at the token endpoint must be one the ID-JAG grants.
    let jag = e.jag(e.claims());
    let other = format!("{ISSUER}/proxy");
    let reply = e.present(0, &jag, &[("resource", other.as_str())]).await;
    refused(&reply, "invalid_target", "not one the ID-JAG grants");
    for aud in [
        json!("https://as.elsewhere.example"),
        json!([ISSUER, "https://x"]),
    ] {
        e.refuses(json!({"aud": aud}), "invalid_grant", "`aud`")
            .await;
    }
}

#[tokio::test]
async fn an_id_jag_for_another_client_is_refused() {
    let e = Enterprise::new().await;
    // Issued to agent 1; agent 0 presents it.
    e.refuses(
        json!({"client_id": e.s.agents[1].id}),
        "invalid_grant",
        "not the authenticated client",
    )
    .await;
    // A client the IdP may not speak for (agent 2), with an ID-JAG naming it.
    let mut c = e.claims();
    c["client_id"] = json!(e.s.agents[2].id);
    let reply = e.present(2, &e.jag(c), &[]).await;
    refused(
        &reply,
        "unauthorized_client",
        "may not use grants of this identity provider",
    );
    // Without client authentication, an agent id is no public client.
    let jag = e.jag(e.claims());
    let reply =
        e.s.form(
            "/oauth2/token",
            &[
                ("grant_type", GRANT),
                ("client_id", e.s.agents[0].id.as_str()),
                ("assertion", jag.as_str()),
            ],
            &[],
        )
        .await;
    refused(&reply, "invalid_client", "unknown client");
}

#[tokio::test]
async fn an_expired_id_jag_is_refused() {
    let e = Enterprise::new().await;
    let t = now(&e.s.api);
    e.refuses(
        json!({"exp": t - 61, "iat": t - 400}),
        "invalid_grant",
        "expired",
    )
    .await;
    e.refuses(json!({"exp": null}), "invalid_grant", "`exp` is missing")
        .await;
    e.refuses(json!({"iat": null}), "invalid_grant", "`iat` is missing")
        .await;
    e.refuses(
        json!({"exp": t + 7_200}),
        "invalid_grant",
        "too far in the future",
    )
    .await;
    // Valid when signed, presented after it expired (past the skew).
    let jag = e.jag(e.claims());
    e.s.api.clock.advance(Duration::seconds(300 + 61));
    refused(&e.present(0, &jag, &[]).await, "invalid_grant", "expired");
}

#[tokio::test]
async fn a_scope_wider_than_the_mandate_is_narrowed_never_widened() {
    let e = Enterprise::new().await;
    // The IdP allows more than the mandate grants: the token has the mandate's part.
    let reply = e
        .present_with(json!({"scope": "flights.search payments.send admin.*"}))
        .await;
    assert_eq!(reply.ok(200)["scope"], "flights.search");
    // The IdP allows part of a pattern the mandate grants: that part only.
    let reply = e.present_with(json!({"scope": "hotels.book"})).await;
    assert_eq!(reply.ok(200)["scope"], "hotels.book");
    // Nothing the mandate grants: refused.
    e.refuses(
        json!({"scope": "payments.send"}),
        "invalid_scope",
        "none of the mandate's tools",
    )
    .await;
    // The client asking for more than both allow: refused.
    let mut c = e.claims();
    c["scope"] = json!("flights.search");
    let reply = e
        .present(0, &e.jag(c), &[("scope", "flights.search flights.book")])
        .await;
    refused(&reply, "invalid_scope", "wider");
}

#[tokio::test]
async fn a_subject_that_maps_to_no_person_is_refused() {
    let e = Enterprise::new().await;
    e.refuses(
        json!({"email": "mallory@example.com"}),
        "invalid_grant",
        "maps to no person",
    )
    .await;
    // This IdP maps people by `email`: without it, no one (the `sub` is not guessed).
    e.refuses(
        json!({"email": null, "sub": "alice@example.com"}),
        "invalid_grant",
        "no `email`",
    )
    .await;
}

#[tokio::test]
async fn a_person_without_a_mandate_is_told_to_request_one() {
    let e = Enterprise::new().await;
    e.s.api
        .post(
            "/v1/humans",
            &e.s.api.admin,
            &json!({"display_name": "Bob", "email": "bob@example.com"}),
        )
        .await
        .ok(201);
    let reply = e.present_with(json!({"email": "bob@example.com"})).await;
    refused(&reply, "invalid_grant", "a mandate must be requested first");
    let why = reply.body["error_description"].as_str().unwrap();
    assert!(why.contains("/v1/mandates"), "{why}");
    // Alice's mandate is agent 0's; agent 1 (trusted by the IdP) has none from her.
    let mut c = e.claims();
    c["client_id"] = json!(e.s.agents[1].id);
    let reply = e.present(1, &e.jag(c), &[]).await;
    refused(&reply, "invalid_grant", "a mandate must be requested first");
}

#[tokio::test]
async fn a_revoked_mandate_grants_nothing() {
    let e = Enterprise::new().await;
    e.s.api
        .send(
            axum::http::Method::POST,
            &format!("/v1/mandates/{}/revoke", e.mandate),
            Some(&e.s.alice_token),
            None,
        )
        .await
        .ok(200);
    e.refuses(json!({}), "invalid_grant", "no active mandate")
        .await;
}

#[tokio::test]
async fn a_public_client_presents_an_id_jag_under_the_mandate_its_person_authorized() {
    let mut s = Authorize::new().await;
    let idp = Idp::start().await;
    let tokens = replica(&s.api, &idp, vec![s.client.clone()]).await;
    mount(&mut s.api, tokens);
    let resource = format!("{ISSUER}/mcp/fx");
    let jag = |s: &Authorize| {
        let t = s.api.service.clock().now().timestamp();
        sign(
            &idp.key,
            json!({"typ": "oauth-id-jag+jwt", "kid": "idp-1"}),
            json!({"iss": idp.issuer, "sub": "00u-alice", "aud": ISSUER,
                   "client_id": s.client, "jti": mandate_token::random_id("jag").unwrap(),
                   "exp": t + 300, "iat": t, "resource": resource,
                   "email": "alice@example.com"}),
        )
    };
    // Alice never authorized the client: no agent, no mandate; she is to authorize it.
    let reply = present_public(&s, jag(&s)).await;
    refused(&reply, "invalid_grant", "/oauth2/authorize");
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    let _code = s.code(&mut alice).await;
    let reply = present_public(&s, jag(&s)).await;
    let body = reply.ok(200).clone();
    assert!(body.get("refresh_token").is_none());
    let (_, c) = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], s.alice.as_str());
    assert!(
        c["act"]["sub"].as_str().unwrap().starts_with("agt_"),
        "{c:?}"
    );
    assert!(c["aud"].to_string().contains(&resource), "{c:?}");
    let scope = body["scope"].as_str().unwrap();
    assert!(
        !scope.is_empty() && scope.split(' ').all(|t| t.starts_with("fx.")),
        "{scope}"
    );
}

/// The jwt-bearer grant by the registered public client: `client_id` and the ID-JAG.
async fn present_public(s: &Authorize, assertion: String) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", GRANT),
            ("client_id", s.client.as_str()),
            ("assertion", assertion.as_str()),
        ])
        .finish();
    crate::oauth_authorize::json_post(
        &s.api,
        "/oauth2/token",
        "application/x-www-form-urlencoded",
        body.into_bytes(),
    )
    .await
}

#[tokio::test]
async fn an_id_jag_token_is_bound_to_the_dpop_key_it_was_presented_with() {
    let e = Enterprise::new().await;
    let key = SigningKey::generate(Alg::EdDSA, "dpop".into()).unwrap();
    let proof =
        e.s.proof(&key, "POST", &format!("{ISSUER}/oauth2/token"), None);
    let client = e.s.assertion(0, "dpop-client");
    let jag = e.jag(e.claims());
    let reply =
        e.s.form(
            "/oauth2/token",
            &[
                ("grant_type", GRANT),
                ("client_assertion_type", BEARER),
                ("client_assertion", client.as_str()),
                ("assertion", jag.as_str()),
            ],
            &[("DPoP", proof.as_str())],
        )
        .await;
    let body = reply.ok(200).clone();
    assert_eq!(body["token_type"], "DPoP");
    let (_, c) = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["cnf"]["jkt"], json!(key.public_jwk().thumbprint()));
}
