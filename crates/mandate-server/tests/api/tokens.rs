// The token service over HTTP: client authentication, task tokens for mandates,
// delegation chains that only narrow and die with their mandate, DPoP, introspection,
// revocation, and hostile requests — each refused with a clear OAuth error.

use axum::body::Body;
use axum::http::{Method, Request, header};
use chrono::Duration;
use mandate_jose::{Alg, SigningKey, b64url_decode, b64url_encode};
use serde_json::{Map, Value, json};

use crate::support::{Api, Reply, start_time};

const ISSUER: &str = mandate_server::DEFAULT_PUBLIC_URL;
pub(crate) const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub(crate) const BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(crate) struct Agent {
    pub(crate) id: String,
    pub(crate) key: SigningKey,
}

pub(crate) struct Setup {
    pub(crate) api: Api,
    pub(crate) alice: String,
    pub(crate) alice_token: String,
    pub(crate) agents: Vec<Agent>,
}

pub(crate) fn now(api: &Api) -> i64 {
    api.service.clock().now().timestamp()
}

pub(crate) fn sign(key: &SigningKey, header: Value, claims: Value) -> String {
    let (Value::Object(h), Value::Object(c)) = (header, claims) else {
        unreachable!()
    };
    key.sign(h, &serde_json::to_vec(&c).unwrap()).unwrap()
}

impl Setup {
    pub(crate) async fn new() -> Setup {
        Setup::on(Api::with_tokens().await).await
    }

    async fn on(api: Api) -> Setup {
        let alice = api
            .post(
                "/v1/humans",
                &api.admin,
                &json!({"display_name": "Alice", "email": "alice@example.com"}),
            )
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let alice_token = api
            .post(
                &format!("/v1/humans/{alice}/tokens"),
                &api.admin,
                &json!({"label": "t"}),
            )
            .await
            .ok(201)["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut agents = Vec::new();
        for (i, name) in ["planner", "booker", "payer", "outsider"]
            .iter()
            .enumerate()
        {
            let alg = if i % 2 == 0 { Alg::EdDSA } else { Alg::ES256 };
            let key = SigningKey::generate(alg, format!("key-{name}")).unwrap();
            let reply = api
                .post(
                    "/v1/agents",
                    &api.admin,
                    &json!({"name": name, "owner": alice,
                            "credentials": {"jwks": [key.public_jwk().to_public_json()]}}),
                )
                .await;
            let id = reply.ok(201)["id"].as_str().unwrap().to_owned();
            agents.push(Agent { id, key });
        }
        Setup {
            api,
            alice,
            alice_token,
            agents,
        }
    }

    /// A mandate for agent 0, granted by Alice: three tools, delegation two hops deep.
    pub(crate) async fn mandate(&self) -> String {
        let agent = &self.agents[0];
        let token = self
            .api
            .post(
                &format!("/v1/agents/{}/tokens", agent.id),
                &self.api.admin,
                &json!({"label": "t"}),
            )
            .await
            .ok(201)["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let terms = json!({
            "agent_id": agent.id,
            "human_id": self.alice,
            "intent": "Plan and book the Lisbon offsite",
            "scope": {"tools": [
                {"tool": "flights.search"}, {"tool": "flights.book"}, {"tool": "hotels.*"}
            ]},
            "data_ceiling": "internal",
            "mode": "execute",
            "max_delegation_depth": 2,
            "expires_at": (start_time() + Duration::hours(1)).to_rfc3339(),
        });
        let id = self.api.post("/v1/mandates", &token, &terms).await.ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.api
            .post(
                &format!("/v1/mandates/{id}/consent"),
                &self.alice_token,
                &json!({"decision": "granted"}),
            )
            .await
            .ok(200);
        id
    }

    pub(crate) fn assertion(&self, agent: usize, jti: &str) -> String {
        let a = &self.agents[agent];
        let t = now(&self.api);
        sign(
            &a.key,
            json!({}),
            json!({"iss": a.id, "sub": a.id, "aud": format!("{ISSUER}/oauth2/token"),
                   "iat": t, "exp": t + 60, "jti": jti}),
        )
    }

    pub(crate) async fn form(
        &self,
        path: &str,
        params: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Reply {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        self.api.raw(request.body(Body::from(body)).unwrap()).await
    }

    /// `client_credentials` with this assertion and, if given, `authorization_details`.
    async fn client_credentials(&self, assertion: &str, details: Option<&str>) -> Reply {
        self.client_credentials_with(assertion, details, None).await
    }

    /// The same, with a DPoP proof.
    async fn client_credentials_with(
        &self,
        assertion: &str,
        details: Option<&str>,
        proof: Option<&str>,
    ) -> Reply {
        let mut params = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", BEARER),
            ("client_assertion", assertion),
        ];
        if let Some(d) = details {
            params.push(("authorization_details", d));
        }
        let extra: Vec<(&str, &str)> = proof.map(|p| ("DPoP", p)).into_iter().collect();
        self.form("/oauth2/token", &params, &extra).await
    }

    /// A task token for agent 0 under `mandate` (with a DPoP proof by `dpop`, if any).
    pub(crate) async fn issue(&self, mandate: &str, jti: &str, dpop: Option<&SigningKey>) -> Reply {
        let assertion = self.assertion(0, jti);
        let details = json!([{"type": "mandate", "mandate_id": mandate}]).to_string();
        let proof = dpop.map(|k| self.proof(k, "POST", &format!("{ISSUER}/oauth2/token"), None));
        self.client_credentials_with(&assertion, Some(&details), proof.as_deref())
            .await
    }

    /// Agent `to` exchanges `subject` (delegation), optionally narrowing `scope`.
    pub(crate) async fn exchange(
        &self,
        to: usize,
        subject: &str,
        scope: Option<&str>,
        jti: &str,
    ) -> Reply {
        let client = self.assertion(to, &format!("{jti}-client"));
        let actor = self.assertion(to, &format!("{jti}-actor"));
        let mut params = vec![
            ("grant_type", EXCHANGE),
            ("client_assertion_type", BEARER),
            ("client_assertion", client.as_str()),
            ("subject_token", subject),
            ("subject_token_type", ACCESS),
            ("actor_token", actor.as_str()),
            ("actor_token_type", JWT),
        ];
        if let Some(s) = scope {
            params.push(("scope", s));
        }
        self.form("/oauth2/token", &params, &[]).await
    }

    pub(crate) fn proof(
        &self,
        key: &SigningKey,
        htm: &str,
        htu: &str,
        token: Option<&str>,
    ) -> String {
        let mut claims = json!({"jti": mandate_token::random_id("p").unwrap(), "htm": htm,
                                "htu": htu, "iat": now(&self.api)});
        if let Some(t) = token {
            claims["ath"] = json!(mandate_token::access_token_hash(t));
        }
        sign(
            key,
            json!({"typ": "dpop+jwt", "jwk": key.public_jwk().to_public_json()}),
            claims,
        )
    }

    pub(crate) async fn introspect(&self, token: &str) -> Value {
        let auth = format!("Bearer {}", self.api.admin);
        self.form(
            "/oauth2/introspect",
            &[("token", token)],
            &[("authorization", &auth)],
        )
        .await
        .ok(200)
        .clone()
    }
}

pub(crate) fn claims(token: &str) -> (Map<String, Value>, Map<String, Value>) {
    let mut parts = token.split('.');
    let h = b64url_decode(parts.next().unwrap()).unwrap();
    let p = b64url_decode(parts.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&p).unwrap(),
    )
}

#[track_caller]
pub(crate) fn oauth_error(reply: &Reply, status: u16, code: &str) -> String {
    assert_eq!(reply.status.as_u16(), status, "body: {}", reply.body);
    assert_eq!(reply.body["error"], code, "body: {}", reply.body);
    let description = reply.body["error_description"].as_str().unwrap().to_owned();
    assert!(!description.is_empty());
    description
}

#[tokio::test]
async fn metadata_and_jwks_describe_the_service() {
    let s = Setup::new().await;
    let m = s
        .api
        .send(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await;
    let m = m.ok(200);
    assert_eq!(m["issuer"], ISSUER);
    for (name, path) in [
        ("token_endpoint", "/oauth2/token"),
        ("jwks_uri", "/oauth2/jwks"),
        ("introspection_endpoint", "/oauth2/introspect"),
        ("revocation_endpoint", "/oauth2/revoke"),
    ] {
        assert_eq!(m[name], format!("{ISSUER}{path}"));
    }
    assert_eq!(
        m["grant_types_supported"],
        json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            EXCHANGE
        ])
    );
    // Agents authenticate with keys; public MCP clients (authorization code) with none.
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt", "none"])
    );
    assert_eq!(
        m["dpop_signing_alg_values_supported"],
        json!(["EdDSA", "ES256"])
    );
    let jwks = s.api.send(Method::GET, "/oauth2/jwks", None, None).await;
    let keys = jwks.ok(200)["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert!(keys[0].get("d").is_none(), "public keys only");
}

#[tokio::test]
async fn a_task_token_carries_the_mandate_and_is_bound_to_its_dpop_key() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    let dpop = SigningKey::generate(Alg::ES256, "dpop".into()).unwrap();
    let reply = s.issue(&mandate, "a1", Some(&dpop)).await;
    let body = reply.ok(200).clone();
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["expires_in"], 300, "the 5-minute default");
    assert_eq!(body["scope"], "flights.search flights.book hotels.*");
    let token = body["access_token"].as_str().unwrap();
    let (h, c) = claims(token);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "EdDSA");
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["sub"], s.alice, "the human");
    assert_eq!(c["act"], json!({"sub": s.agents[0].id}));
    assert_eq!(c["client_id"], s.agents[0].id);
    assert_eq!(c["mandate"], mandate);
    assert_eq!(c["aud"], json!([format!("{ISSUER}/mcp")]));
    assert_eq!(c["cnf"]["jkt"], dpop.public_jwk().thumbprint());
    assert_eq!(c["authorization_details"][0]["type"], "mandate");
    assert_eq!(c["authorization_details"][0]["mandate_id"], mandate);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    let i = s.introspect(token).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["token_type"], "DPoP");
    // The issue is in the ledger, without the token.
    let audit = s
        .api
        .get(
            &format!("/v1/audit?mandate={mandate}&type=token.issued"),
            &s.api.admin,
        )
        .await;
    let events = audit.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["jti"], c["jti"]);
    assert!(!audit.body.to_string().contains(token));
}

#[tokio::test]
async fn a_three_agent_chain_only_narrows_and_dies_with_its_mandate() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    let a = s.issue(&mandate, "r1", None).await.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A → B, narrowed to the flight tools.
    let b = s
        .exchange(1, &a, Some("flights.search flights.book"), "b1")
        .await;
    let b_body = b.ok(200).clone();
    assert_eq!(b_body["issued_token_type"], ACCESS);
    let b_token = b_body["access_token"].as_str().unwrap().to_owned();
    let (_, bc) = claims(&b_token);
    assert_eq!(
        bc["act"],
        json!({"sub": s.agents[1].id, "act": {"sub": s.agents[0].id}})
    );
    assert_eq!(bc["sub"], s.alice);
    assert_eq!(bc["scope"], "flights.search flights.book");
    // B → C may not widen back to hotels.
    let wider = s.exchange(2, &b_token, Some("hotels.rooms"), "c0").await;
    oauth_error(&wider, 400, "invalid_scope");
    let c = s.exchange(2, &b_token, Some("flights.search"), "c1").await;
    let c_token = c.ok(200)["access_token"].as_str().unwrap().to_owned();
    let (_, cc) = claims(&c_token);
    assert_eq!(
        cc["act"],
        json!({"sub": s.agents[2].id, "act": {"sub": s.agents[1].id, "act": {"sub": s.agents[0].id}}})
    );
    // A third hop is deeper than the mandate allows.
    let deep = s.exchange(3, &c_token, None, "d1").await;
    let why = oauth_error(&deep, 400, "invalid_grant");
    assert!(why.contains("deeper"), "{why}");
    // Each hop is recorded.
    let hops = s
        .api
        .get(
            &format!("/v1/audit?mandate={mandate}&type=token.exchanged"),
            &s.api.admin,
        )
        .await;
    assert_eq!(hops.ok(200)["items"].as_array().unwrap().len(), 2);

    // Completing the root mandate kills the whole chain.
    s.api.clock.advance(Duration::seconds(5));
    s.api
        .post(
            &format!("/v1/mandates/{mandate}/complete"),
            &s.api.admin,
            &json!({"reason": "done"}),
        )
        .await
        .ok(200);
    for t in [&a, &b_token, &c_token] {
        assert_eq!(s.introspect(t).await, json!({"active": false}));
    }
    let again = s.exchange(1, &a, None, "b2").await;
    oauth_error(&again, 400, "invalid_grant");
    let fresh = s.issue(&mandate, "r2", None).await;
    let why = oauth_error(&fresh, 400, "invalid_grant");
    assert!(why.contains("not active"), "{why}");
}

#[tokio::test]
async fn revoking_a_grant_revokes_what_was_delegated_from_it_only() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    let a = s.issue(&mandate, "r1", None).await.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = s.exchange(1, &a, None, "b1").await.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = s.exchange(2, &b, None, "c1").await.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // B revokes its own token, authenticated as itself (a wrong hint is only a hint).
    let assertion = s.assertion(1, "rv1");
    s.form(
        "/oauth2/revoke",
        &[
            ("token", &b),
            ("token_type_hint", "refresh_token"),
            ("client_assertion_type", BEARER),
            ("client_assertion", &assertion),
        ],
        &[],
    )
    .await
    .ok(200);
    assert_eq!(s.introspect(&a).await["active"], true);
    assert_eq!(s.introspect(&b).await["active"], false);
    assert_eq!(s.introspect(&c).await["active"], false);
    // An outsider cannot revoke A's token (and is not told whether it exists).
    let outsider = s.assertion(3, "rv2");
    s.form(
        "/oauth2/revoke",
        &[
            ("token", &a),
            ("client_assertion_type", BEARER),
            ("client_assertion", &outsider),
        ],
        &[],
    )
    .await
    .ok(200);
    assert_eq!(s.introspect(&a).await["active"], true);
    // Junk is accepted and ignored (RFC 7009 §2.2).
    let junk = s.assertion(0, "rv3");
    s.form(
        "/oauth2/revoke",
        &[
            ("token", "not-a-token"),
            ("client_assertion_type", BEARER),
            ("client_assertion", &junk),
        ],
        &[],
    )
    .await
    .ok(200);
    // A revocation is audited with everything it took down.
    let events = s
        .api
        .get(
            &format!("/v1/audit?mandate={mandate}&type=token.revoked"),
            &s.api.admin,
        )
        .await;
    let items = events.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["data"]["revoked"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn client_authentication_is_strict() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    s.issue(&mandate, "once", None).await.ok(200);
    // The same assertion twice: a replay.
    let replay = s.issue(&mandate, "once", None).await;
    let why = oauth_error(&replay, 401, "invalid_client");
    assert!(why.contains("replay"), "{why}");
    let details = json!([{"type": "mandate", "mandate_id": mandate}]).to_string();
    let t = now(&s.api);
    let a = &s.agents[0];
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            sign(
                &a.key,
                json!({}),
                json!({"iss": a.id, "sub": a.id, "aud": "https://elsewhere/token", "exp": t + 60, "jti": "x1"}),
            ),
        ),
        (
            "expired",
            sign(
                &a.key,
                json!({}),
                json!({"iss": a.id, "sub": a.id, "aud": format!("{ISSUER}/oauth2/token"), "exp": t - 120, "jti": "x2"}),
            ),
        ),
        (
            "another agent's key",
            sign(
                &s.agents[2].key,
                json!({}),
                json!({"iss": a.id, "sub": a.id, "aud": format!("{ISSUER}/oauth2/token"), "exp": t + 60, "jti": "x3"}),
            ),
        ),
        (
            "unknown client",
            sign(
                &a.key,
                json!({}),
                json!({"iss": "agt_0123456789abcdef0123456789abcdef", "sub": "agt_0123456789abcdef0123456789abcdef", "aud": format!("{ISSUER}/oauth2/token"), "exp": t + 60, "jti": "x4"}),
            ),
        ),
        ("not a JWT", "abc".to_owned()),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64url_encode(br#"{"alg":"none"}"#),
                b64url_encode(json!({"iss": a.id, "sub": a.id}).to_string().as_bytes())
            ),
        ),
    ];
    for (what, assertion) in cases {
        let reply = s.client_credentials(&assertion, Some(&details)).await;
        assert_eq!(reply.status.as_u16(), 401, "{what}: {}", reply.body);
        assert_eq!(reply.body["error"], "invalid_client", "{what}");
    }
    // No authentication at all.
    let none = s
        .form(
            "/oauth2/token",
            &[("grant_type", "client_credentials")],
            &[],
        )
        .await;
    oauth_error(&none, 401, "invalid_client");
    // A disabled agent gets nothing.
    s.api
        .patch(
            &format!("/v1/agents/{}", a.id),
            &s.api.admin,
            &json!({"status": "disabled"}),
        )
        .await
        .ok(200);
    let disabled = s.issue(&mandate, "after-disable", None).await;
    let why = oauth_error(&disabled, 401, "invalid_client");
    assert!(why.contains("disabled"), "{why}");
}

#[tokio::test]
async fn mandates_that_are_not_the_agents_or_not_active_grant_nothing() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    // The outsider names agent 0's mandate.
    let assertion = s.assertion(3, "o1");
    let details = json!([{"type": "mandate", "mandate_id": mandate}]).to_string();
    let reply = s.client_credentials(&assertion, Some(&details)).await;
    let why = oauth_error(&reply, 400, "invalid_grant");
    assert!(why.contains("not granted to this agent"), "{why}");
    // Asking for a tool outside the mandate.
    let assertion = s.assertion(0, "o2");
    let details =
        json!([{"type": "mandate", "mandate_id": mandate, "tools": ["mail.send"]}]).to_string();
    let reply = s.client_credentials(&assertion, Some(&details)).await;
    oauth_error(&reply, 400, "invalid_authorization_details");
    // A token never outlives its mandate: 2 minutes before the end, it lives 2 minutes.
    s.api
        .clock
        .advance(Duration::hours(1) - Duration::minutes(2));
    let reply = s.issue(&mandate, "o3", None).await;
    assert_eq!(reply.ok(200)["expires_in"], 120);
    // A subject token from nowhere.
    let forged = s
        .exchange(1, "eyJhbGciOiJFZERTQSJ9.e30.AAAA", None, "o4")
        .await;
    oauth_error(&forged, 400, "invalid_grant");
}

#[tokio::test]
async fn hostile_token_requests_are_refused_with_clear_errors() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    let details = json!([{"type": "mandate", "mandate_id": mandate}]).to_string();
    let assertion = s.assertion(0, "h1");
    let base = [
        ("client_assertion_type", BEARER),
        ("client_assertion", assertion.as_str()),
    ];
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("grant_type", "password")],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("authorization_details", "[{"),
            ],
            400,
            "invalid_authorization_details",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("authorization_details", r#"{"type":"mandate"}"#),
            ],
            400,
            "invalid_authorization_details",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("authorization_details", r#"[{"type":"payment"}]"#),
            ],
            400,
            "invalid_authorization_details",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                (
                    "authorization_details",
                    r#"[{"type":"mandate","mandate_id":"mnd_x"}]"#,
                ),
            ],
            400,
            "invalid_authorization_details",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("authorization_details", &details),
                ("resource", "https://evil.example/"),
            ],
            400,
            "invalid_target",
        ),
        (
            vec![("grant_type", "client_credentials"), ("scope", "admin")],
            400,
            "invalid_scope",
        ),
        (vec![("grant_type", EXCHANGE)], 400, "invalid_request"),
    ];
    for (i, (params, status, code)) in cases.into_iter().enumerate() {
        // A fresh assertion each time, so a replay is never the reason.
        let fresh = s.assertion(0, &format!("h-{i}"));
        let mut all: Vec<(&str, &str)> = params.clone();
        all.push(base[0]);
        all.push(("client_assertion", &fresh));
        let reply = s.form("/oauth2/token", &all, &[]).await;
        assert_eq!(reply.status.as_u16(), status, "{params:?}: {}", reply.body);
        assert_eq!(reply.body["error"], code, "{params:?}");
    }
    // Not a form.
    let reply = s
        .api
        .post(
            "/oauth2/token",
            &s.api.admin,
            &json!({"grant_type": "client_credentials"}),
        )
        .await;
    oauth_error(&reply, 400, "invalid_request");
    // An oversized parameter.
    let huge = "a".repeat(20_000);
    let reply = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion", &huge),
            ],
            &[],
        )
        .await;
    oauth_error(&reply, 400, "invalid_request");
    // A DPoP proof for another endpoint, and two proofs at once.
    let key = SigningKey::generate(Alg::EdDSA, "d".into()).unwrap();
    let wrong = s.proof(&key, "POST", &format!("{ISSUER}/oauth2/revoke"), None);
    let fresh = s.assertion(0, "h-dpop");
    let params = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", BEARER),
        ("client_assertion", fresh.as_str()),
        ("authorization_details", details.as_str()),
    ];
    let reply = s.form("/oauth2/token", &params, &[("DPoP", &wrong)]).await;
    oauth_error(&reply, 400, "invalid_dpop_proof");
}

#[tokio::test]
async fn a_dpop_bound_token_is_useless_without_its_key() {
    let s = Setup::new().await;
    let key = SigningKey::generate(Alg::EdDSA, "dpop".into()).unwrap();
    // A mandate-less token: it can only ask for mandates, at the admin API.
    let assertion = s.assertion(0, "m1");
    let proof = s.proof(&key, "POST", &format!("{ISSUER}/oauth2/token"), None);
    let reply = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &assertion),
            ],
            &[("DPoP", &proof)],
        )
        .await;
    let body = reply.ok(200).clone();
    assert_eq!(body["scope"], "mandates:request");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let list = |scheme: &'static str, proof: Option<String>| {
        let token = token.clone();
        let api = &s.api;
        async move {
            let mut r = Request::builder()
                .method(Method::GET)
                .uri("/v1/mandates")
                .header(header::AUTHORIZATION, format!("{scheme} {token}"));
            if let Some(p) = proof {
                r = r.header("DPoP", p);
            }
            api.raw(r.body(Body::empty()).unwrap()).await
        }
    };
    let url = format!("{ISSUER}/v1/mandates");
    let good = s.proof(&key, "GET", &url, Some(&token));
    list("DPoP", Some(good)).await.ok(200);
    // As a bearer token, without a proof, with another key's proof, with a replayed one.
    list("Bearer", None).await.problem(401, "unauthenticated");
    list("DPoP", None).await.problem(401, "unauthenticated");
    let other = SigningKey::generate(Alg::EdDSA, "other".into()).unwrap();
    let stolen = s.proof(&other, "GET", &url, Some(&token));
    list("DPoP", Some(stolen))
        .await
        .problem(401, "unauthenticated");
    let once = s.proof(&key, "GET", &url, Some(&token));
    list("DPoP", Some(once.clone())).await.ok(200);
    list("DPoP", Some(once))
        .await
        .problem(401, "unauthenticated");
    // Revoked: refused at once on this replica.
    let auth = format!("Bearer {}", s.api.admin);
    s.form(
        "/oauth2/revoke",
        &[("token", &token)],
        &[("authorization", &auth)],
    )
    .await
    .ok(200);
    let after = s.proof(&key, "GET", &url, Some(&token));
    list("DPoP", Some(after))
        .await
        .problem(401, "unauthenticated");
}

#[tokio::test]
async fn renewal_is_a_fresh_decision() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    let a = s.issue(&mandate, "n1", None).await.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The holder exchanges its own token: a renewal (no actor token needed).
    let client = s.assertion(0, "n2");
    let renew = |client: String| {
        let a = a.clone();
        let s = &s;
        async move {
            s.form(
                "/oauth2/token",
                &[
                    ("grant_type", EXCHANGE),
                    ("client_assertion_type", BEARER),
                    ("client_assertion", &client),
                    ("subject_token", &a),
                    ("subject_token_type", ACCESS),
                ],
                &[],
            )
            .await
        }
    };
    let renewed = renew(client).await;
    let (_, c) = claims(renewed.ok(200)["access_token"].as_str().unwrap());
    assert_eq!(c["act"], json!({"sub": s.agents[0].id}));
    // Once the mandate is revoked, renewal is refused.
    s.api
        .post(
            &format!("/v1/mandates/{mandate}/revoke"),
            &s.alice_token,
            &json!({"reason": "changed my mind"}),
        )
        .await
        .ok(200);
    let refused = renew(s.assertion(0, "n3")).await;
    oauth_error(&refused, 400, "invalid_grant");
}

#[tokio::test]
async fn a_rotated_key_keeps_verifying_through_the_overlap_then_retires() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    let old = s.issue(&mandate, "k1", None).await.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens = s.api.service.tokens().unwrap().clone();
    let next = SigningKey::generate(Alg::ES256, "k2".into()).unwrap();
    tokens.rotate(next).await.unwrap();
    let jwks = s.api.send(Method::GET, "/oauth2/jwks", None, None).await;
    let kids: Vec<String> = jwks.ok(200)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, ["k1", "k2"], "both published during the overlap");
    let new = s.issue(&mandate, "k3", None).await.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(claims(&new).0["kid"], "k2");
    assert_eq!(claims(&new).0["alg"], "ES256");
    assert_eq!(s.introspect(&old).await["active"], true);
    // Past the overlap (longest lifetime + skew), the old key is gone.
    s.api.clock.advance(Duration::minutes(8));
    tokens.refresh_keys().await.unwrap();
    let jwks = s.api.send(Method::GET, "/oauth2/jwks", None, None).await;
    assert_eq!(jwks.ok(200)["keys"].as_array().unwrap().len(), 1);
    assert_eq!(s.introspect(&old).await["active"], false);
}

/// A read of the published keys running beside a rotation never puts the old signing
/// key back: right after each rotation, and whatever reads are under way, what this
/// replica signs names the new key. (Both run on two worker threads at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_never_undone_by_a_read_of_the_keys_beside_it() {
    let s = Setup::new().await;
    let tokens = s.api.service.tokens().unwrap().clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (tokens, stop) = (tokens.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokens.refresh_keys().await.unwrap();
                reads += 1;
            }
            reads
        })
    };
    for i in 0..60 {
        let kid = format!("rotated-{i}");
        tokens
            .rotate(SigningKey::generate(Alg::EdDSA, kid.clone()).unwrap())
            .await
            .unwrap();
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
            let sealed = tokens.seal("check+jwt", &Map::new()).unwrap();
            assert_eq!(claims(&sealed).0["kid"], kid.as_str(), "after rotation {i}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
}

/// Registers an agent with these credentials; returns its id.
async fn agent_with(s: &Setup, name: &str, credentials: Value) -> String {
    s.api
        .post(
            "/v1/agents",
            &s.api.admin,
            &json!({"name": name, "owner": s.alice, "credentials": credentials}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn spiffe_workloads_authenticate_with_jwt_svids_from_a_trusted_bundle() {
    let key = SigningKey::generate(Alg::ES256, "svid-1".into()).unwrap();
    let jwks = json!({"keys": [key.public_jwk().to_public_json()]}).to_string();
    let domain = mandate_token::TrustDomain::parse("example.org").unwrap();
    let bundle = mandate_token::JwtBundle::from_jwks_json(domain, jwks.as_bytes()).unwrap();
    let mut bundles = mandate_token::TrustBundles::new();
    bundles.insert(bundle);
    let s = Setup::on(Api::with_tokens_as(|_| {}, move |t| t.with_spiffe(bundles)).await).await;
    let spiffe_id = "spiffe://example.org/ns/prod/sa/planner";
    let id = agent_with(&s, "svid-planner", json!({"spiffe_id": spiffe_id})).await;
    let t = now(&s.api);
    let svid = |sub: &str, signer: &SigningKey| {
        sign(
            signer,
            json!({"typ": "JWT"}),
            json!({"sub": sub, "aud": [format!("{ISSUER}/oauth2/token")], "exp": t + 300, "iat": t}),
        )
    };
    let reply = s.client_credentials(&svid(spiffe_id, &key), None).await;
    let token = reply.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&token).1["act"], json!({"sub": id}));
    // Another workload of the trust domain is not an agent; another domain is not trusted;
    // a key outside the bundle proves nothing.
    for (what, assertion) in [
        (
            "unregistered",
            svid("spiffe://example.org/ns/prod/sa/other", &key),
        ),
        (
            "untrusted domain",
            svid("spiffe://evil.example/sa/planner", &key),
        ),
        (
            "foreign key",
            svid(
                spiffe_id,
                &SigningKey::generate(Alg::ES256, "svid-1".into()).unwrap(),
            ),
        ),
    ] {
        let reply = s.client_credentials(&assertion, None).await;
        assert_eq!(reply.status.as_u16(), 401, "{what}: {}", reply.body);
        assert_eq!(reply.body["error"], "invalid_client", "{what}");
    }
}

#[tokio::test]
async fn federated_issuers_authenticate_agents_by_issuer_and_subject() {
    use axum::routing::get;
    // A real OIDC issuer on loopback: discovery and JWKS over HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let key = SigningKey::generate(Alg::EdDSA, "ci-1".into()).unwrap();
    let jwks = json!({"keys": [key.public_jwk().to_public_json()]});
    let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route("/jwks", get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let federation = mandate_token::Federation::new(
        vec![mandate_token::FederatedIssuer::new(
            issuer.clone(),
            vec!["mandate".into()],
        )],
        mandate_token::FederationOptions {
            dangerous_allow_insecure_loopback: true,
            ..Default::default()
        },
    )
    .unwrap();
    let s =
        Setup::on(Api::with_tokens_as(|_| {}, move |t| t.with_federation(federation)).await).await;
    let subject = "repo:acme/deploy:ref:refs/heads/main";
    let id = agent_with(
        &s,
        "ci-deployer",
        json!({"federated": {"issuer": issuer, "subject": subject}}),
    )
    .await;
    let t = now(&s.api);
    let id_token = |sub: &str, aud: &str| {
        sign(
            &key,
            json!({"typ": "JWT"}),
            json!({"iss": issuer, "sub": sub, "aud": aud, "exp": t + 300, "iat": t}),
        )
    };
    let reply = s
        .client_credentials(&id_token(subject, "mandate"), None)
        .await;
    let token = reply.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&token).1["act"], json!({"sub": id}));
    for (what, assertion) in [
        (
            "other subject",
            id_token("repo:acme/other:ref:refs/heads/main", "mandate"),
        ),
        ("other audience", id_token(subject, "someone-else")),
    ] {
        let reply = s.client_credentials(&assertion, None).await;
        assert_eq!(reply.status.as_u16(), 401, "{what}: {}", reply.body);
        assert_eq!(reply.body["error"], "invalid_client", "{what}");
    }
}

#[tokio::test]
async fn server_nonces_are_required_when_configured() {
    let s = Setup::on(Api::with_tokens_as(|c| c.dpop_nonce = true, |t| t).await).await;
    let key = SigningKey::generate(Alg::EdDSA, "dpop".into()).unwrap();
    let htu = format!("{ISSUER}/oauth2/token");
    let ask = |proof: String, jti: &'static str| {
        let s = &s;
        async move {
            let assertion = s.assertion(0, jti);
            s.form(
                "/oauth2/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", BEARER),
                    ("client_assertion", &assertion),
                ],
                &[("DPoP", &proof)],
            )
            .await
        }
    };
    let first = ask(s.proof(&key, "POST", &htu, None), "n1").await;
    oauth_error(&first, 400, "use_dpop_nonce");
    let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let with_nonce = sign(
        &key,
        json!({"typ": "dpop+jwt", "jwk": key.public_jwk().to_public_json()}),
        json!({"jti": "p-nonce", "htm": "POST", "htu": htu, "iat": now(&s.api), "nonce": nonce}),
    );
    let second = ask(with_nonce, "n2").await;
    assert_eq!(second.ok(200)["token_type"], "DPoP");
    let forged = sign(
        &key,
        json!({"typ": "dpop+jwt", "jwk": key.public_jwk().to_public_json()}),
        json!({"jti": "p-forged", "htm": "POST", "htu": htu, "iat": now(&s.api), "nonce": "made-up"}),
    );
    oauth_error(&ask(forged, "n3").await, 400, "use_dpop_nonce");
}

#[tokio::test]
async fn our_own_tokens_expire_on_time_without_skew() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    let tokens = s.api.service.tokens().unwrap();
    // Another replica, which saw neither token issued: it checks them in full.
    let other = &s.api.second_token_service(ISSUER).await;
    let first = s.issue(&mandate, "x1", None).await.ok(200).clone();
    let remembered = first["access_token"].as_str().unwrap().to_owned();
    let lifetime = first["expires_in"].as_i64().unwrap();
    let second = s.issue(&mandate, "x2", None).await.ok(200).clone();
    let fresh = second["access_token"].as_str().unwrap().to_owned();
    // One second before `exp`: live (and the first one is now remembered as verified
    // on the other replica too).
    s.api.clock.advance(Duration::seconds(lifetime - 1));
    tokens.verify_access(&at_mcp(&remembered)).await.unwrap();
    other.verify_access(&at_mcp(&remembered)).await.unwrap();
    assert_eq!(s.introspect(&remembered).await["active"], true);
    // At `exp`: refused at once, from memory (the issuing replica remembers both) or
    // checked in full (the other replica, the second token) — the skew tolerated for
    // other issuers' clocks does not stretch our own tokens.
    s.api.clock.advance(Duration::seconds(1));
    for (replica, token) in [
        (tokens.as_ref(), &remembered),
        (tokens.as_ref(), &fresh),
        (other, &remembered),
        (other, &fresh),
    ] {
        let err = replica.verify_access(&at_mcp(token)).await.unwrap_err();
        assert_eq!(err.description(), "the token has expired", "{err:?}");
        assert_eq!(s.introspect(token).await["active"], false);
    }
}

/// One of our tokens presented to the gateway's MCP endpoint.
fn at_mcp(token: &str) -> mandate_core::Presented<'_> {
    mandate_core::Presented {
        token,
        dpop_scheme: false,
        proof: None,
        method: "POST",
        url: "http://127.0.0.1:8731/mcp",
        audience: "http://127.0.0.1:8731/mcp",
    }
}

/// The replica that issued a token remembers it as verified (its first call and its
/// exchange skip the signature check): what it remembers is exactly what a replica
/// that never saw the token reads from it in full, and a revocation still refuses it
/// there, at the gateway and at the token endpoint.
#[tokio::test]
async fn an_issued_token_is_remembered_as_checking_it_in_full_reads_it() {
    let s = Setup::new().await;
    let mandate = s.mandate().await;
    let here = s.api.service.tokens().unwrap().clone();
    let other = s.api.second_token_service(ISSUER).await;
    let a = s.issue(&mandate, "m1", None).await.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Delegated and narrowed: an act chain, a parent, a smaller scope.
    let b = s
        .exchange(1, &a, Some("flights.search"), "m2")
        .await
        .ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [&a, &b] {
        let remembered = here.verify_access(&at_mcp(token)).await.unwrap();
        let checked = other.verify_access(&at_mcp(token)).await.unwrap();
        assert_eq!(remembered, checked);
    }
    let assertion = s.assertion(1, "m3");
    s.form(
        "/oauth2/revoke",
        &[
            ("token", &b),
            ("client_assertion_type", BEARER),
            ("client_assertion", &assertion),
        ],
        &[],
    )
    .await
    .ok(200);
    let err = here.verify_access(&at_mcp(&b)).await.unwrap_err();
    assert_eq!(err.description(), "the token has been revoked", "{err:?}");
    let again = s.exchange(2, &b, None, "m4").await;
    oauth_error(&again, 400, "invalid_grant");
}

/// `require_dpop` is the server's rule for its agents' grants: without a proof they are
/// refused, and the refusal says so (an interactive client's rule is its registration,
/// `oauth_refresh::dpop_at_the_token_endpoint_is_the_clients_registration`).
#[tokio::test]
async fn agents_need_a_proof_when_the_server_requires_dpop() {
    let s = Setup::on(Api::with_tokens_as(|c| c.require_dpop = true, |t| t).await).await;
    let mandate = s.mandate().await;
    let refused = s.issue(&mandate, "d1", None).await;
    oauth_error(&refused, 400, "invalid_dpop_proof");
    let why = refused.body["error_description"].as_str().unwrap();
    assert!(why.contains("to agents"), "{why}");
    let key = SigningKey::generate(Alg::EdDSA, "dpop".into()).unwrap();
    let bound = s.issue(&mandate, "d2", Some(&key)).await;
    assert_eq!(bound.ok(200)["token_type"], "DPoP");
}
