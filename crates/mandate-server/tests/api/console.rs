//! The console in-process: sign-in, lockout, sessions, CSRF and origin checks, consent
//! and ending a mandate through forms, visible messages for bad input, and isolation
//! between humans and tenants. (The browser flows are in `crates/mandate/tests/console.rs`.)

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Duration;
use mandate_domain::{Principal, Tenant};
use mandate_types::{Secret, TenantId};
use serde_json::json;

use crate::support::{Api, Reply, World, start_time};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A browser's cookie jar over the in-process app.
pub(crate) struct Browser<'a> {
    api: &'a Api,
    pub(crate) cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    pub(crate) fn new(api: &'a Api) -> Self {
        Self {
            api,
            cookies: BTreeMap::new(),
        }
    }

    pub(crate) async fn send(
        &mut self,
        request: axum::http::request::Builder,
        body: Body,
    ) -> (Reply, String) {
        let jar: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let request = if jar.is_empty() {
            request
        } else {
            request.header(header::COOKIE, jar.join("; "))
        };
        let reply = self.api.raw(request.body(body).unwrap()).await;
        for set in reply.headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let html = reply.body.as_str().unwrap_or_default().to_owned();
        (reply, html)
    }

    pub(crate) async fn get(&mut self, path: &str) -> (Reply, String) {
        self.send(Request::builder().uri(path), Body::empty()).await
    }

    pub(crate) async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (Reply, String) {
        self.post_from(path, fields, None).await
    }

    pub(crate) async fn post_from(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (Reply, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            request = request.header(header::ORIGIN, o);
        }
        self.send(request, Body::from(body)).await
    }

    /// The value of a hidden field named `name` on a page.
    pub(crate) fn hidden(html: &str, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let at = html
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in {html}"));
        let rest = &html[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    pub(crate) async fn sign_in(&mut self, email: &str, password: &str) -> (Reply, String) {
        let (_, page) = self.get("/ui/login?next=/ui/").await;
        let csrf = Self::hidden(&page, "csrf");
        self.post(
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("next", "/ui/"),
                ("email", email),
                ("password", password),
            ],
        )
        .await
    }

    /// The CSRF token of the signed-in session, read off a page.
    pub(crate) async fn csrf(&mut self) -> String {
        let (_, page) = self.get("/ui/").await;
        Self::hidden(&page, "csrf")
    }
}

pub(crate) fn location(reply: &Reply) -> &str {
    reply
        .headers
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

pub(crate) async fn with_password(w: &World, human: &str) {
    w.api
        .send(
            Method::PUT,
            &format!("/v1/humans/{human}/password"),
            Some(&w.api.admin),
            Some(&json!({"password": PASSWORD})),
        )
        .await
        .ok(204);
}

#[tokio::test]
async fn sign_in_sets_a_safe_session_and_forms_need_its_token() {
    let w = World::new().await;
    // Passwords are checked, hashed, and never echoed.
    let short = w
        .api
        .send(
            Method::PUT,
            &format!("/v1/humans/{}/password", w.alice),
            Some(&w.api.admin),
            Some(&json!({"password": "short"})),
        )
        .await;
    assert!(
        short
            .problem(422, "invalid-request")
            .contains("at least 10")
    );
    let agent_may_not = w
        .api
        .send(
            Method::PUT,
            &format!("/v1/humans/{}/password", w.alice),
            Some(&w.agent_token),
            Some(&json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(agent_may_not.status, StatusCode::NOT_FOUND);
    with_password(&w, &w.alice).await;

    let mut b = Browser::new(&w.api);
    let (r, _) = b.get("/ui/mandates").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/login?next=%2Fui%2Fmandates");

    // The login form's own token: without it, nothing is checked.
    let (r, page) = b
        .post(
            "/ui/login",
            &[("email", "alice@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(page.contains("role=\"alert\""), "{page}");

    let (r, page) = b.sign_in("alice@example.com", "wrong password!!").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Wrong email or password"), "{page}");
    assert!(
        page.contains("value=\"alice@example.com\""),
        "the email is kept"
    );
    assert!(
        !page.contains("wrong password!!"),
        "the password is never echoed"
    );

    let (r, _) = b.sign_in("ALICE@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    assert_eq!(location(&r), "/ui/");
    let set: Vec<&str> = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("mandate_session=mds_"))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    let (r, page) = b.get("/ui/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(page.contains("Hello, Alice"));
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    // The stored session is a hash: the cookie's value is nowhere in the page.
    let cookie = b.cookies["mandate_session"].clone();
    assert!(!page.contains(&cookie));

    // Sign-out needs the session's token, from our own origin.
    let (r, _) = b.post("/ui/logout", &[("csrf", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let csrf = b.csrf().await;
    let (r, _) = b
        .post_from(
            "/ui/logout",
            &[("csrf", &csrf)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (r, _) = b
        .post_from(
            "/ui/logout",
            &[("csrf", &csrf)],
            Some("http://127.0.0.1:8731"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // The old cookie is dead even if a browser kept it.
    b.cookies.insert("mandate_session".into(), cookie);
    let (r, _) = b.get("/ui/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_for_a_while() {
    let w = World::new().await;
    with_password(&w, &w.alice).await;
    let mut b = Browser::new(&w.api);
    for _ in 0..mandate_core::LOCK_AFTER_FAILURES {
        let (r, _) = b.sign_in("alice@example.com", "not the password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: the right password is refused with the same message.
    let (r, page) = b.sign_in("alice@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("locked for a while"));
    // Unknown names get the very same answer.
    let (r, unknown) = b.sign_in("nobody@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.contains("Wrong email or password"));
    w.api.clock.advance(Duration::minutes(16));
    let (r, _) = b.sign_in("alice@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

/// Ten attempts a minute per sign-in name (counted in the store, so every replica
/// counts the same attempts); the eleventh is refused before any password is checked.
#[tokio::test]
async fn sign_in_attempts_are_limited_per_name_for_a_minute() {
    let w = World::new().await;
    with_password(&w, &w.alice).await;
    let mut b = Browser::new(&w.api);
    for _ in 0..10 {
        let (r, _) = b.sign_in("nobody@example.com", PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let (r, page) = b.sign_in("NOBODY@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.contains("Too many sign-in attempts"), "{page}");
    // Another name is counted apart.
    let (r, _) = b.sign_in("alice@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    w.api.clock.advance(Duration::seconds(61));
    let (r, _) = b.sign_in("nobody@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn consent_and_revocation_through_forms_with_visible_errors() {
    let w = World::new().await;
    for h in [&w.alice, &w.bob] {
        with_password(&w, h).await;
    }
    let id = w.requested().await;

    let mut alice = Browser::new(&w.api);
    alice.sign_in("alice@example.com", PASSWORD).await;
    let (_, home) = alice.get("/ui/").await;
    assert!(
        home.contains("Book a flight to Lisbon"),
        "waiting for consent: {home}"
    );
    let (_, page) = alice.get(&format!("/ui/mandates/{id}")).await;
    for shown in [
        "flights.book",
        "high_impact",
        "confidential",
        "50000",
        // The budget in its currency (minor units in the API).
        "spent 0.00 EUR of 500.00 EUR",
        "Consent",
    ] {
        assert!(page.contains(shown), "{shown} in {page}");
    }
    // Names where a person reads, the ids beside them or on hover: the data owner, and
    // the agent that asked in the timeline.
    for shown in [
        format!("Bob ({})", w.bob),
        format!(r#"<span title="agent:{}">travel-bot</span>"#, w.agent),
    ] {
        assert!(page.contains(&shown), "{shown} in {page}");
    }
    let csrf = Browser::hidden(&page, "csrf");
    let hash = Browser::hidden(&page, "terms_hash");
    let path = format!("/ui/mandates/{id}/consent");

    // No decision, forged token, stale terms: each refused, visibly.
    let (r, page) = alice.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("role=\"alert\"") && page.contains("Choose Consent or Refuse"));
    let (r, _) = alice
        .post(&path, &[("csrf", "x"), ("decision", "granted")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (r, page) = alice
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("decision", "granted"),
                ("terms_hash", "sha256:stale"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{page}");
    assert!(page.contains("role=\"alert\""));

    let (r, _) = alice
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("decision", "granted"),
                ("terms_hash", &hash),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        w.mandate(&id).await["status"],
        "requested",
        "Bob must consent too"
    );

    let mut bob = Browser::new(&w.api);
    bob.sign_in("bob@example.com", PASSWORD).await;
    let csrf_bob = bob.csrf().await;
    bob.post(
        &path,
        &[
            ("csrf", &csrf_bob),
            ("decision", "granted"),
            ("terms_hash", &hash),
        ],
    )
    .await;
    let m = w.mandate(&id).await;
    assert_eq!(m["status"], "active");
    let (_, page) = alice.get(&format!("/ui/mandates/{id}")).await;
    assert!(
        page.contains("console") && page.contains("consent.granted"),
        "record and timeline"
    );

    let end = format!("/ui/mandates/{id}/end");
    let (r, page) = alice
        .post(&end, &[("csrf", &csrf), ("ending", "explode")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Choose Complete or Revoke"));
    let (r, _) = alice
        .post(
            &end,
            &[
                ("csrf", &csrf),
                ("ending", "revoke"),
                ("reason", "trip cancelled"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(w.mandate(&id).await["status"], "revoked");
    let (_, page) = alice.get(&format!("/ui/mandates/{id}?done=revoked")).await;
    assert!(page.contains("trip cancelled") && page.contains("mandate.revoked"));
}

#[tokio::test]
async fn nobody_sees_another_humans_or_tenants_mandates() {
    let w = World::new().await;
    for h in [&w.alice, &w.bob] {
        with_password(&w, h).await;
    }
    let id = w.active().await;

    // Another tenant, with its own admin human, agent and mandate.
    let store = w.api.service.store().clone();
    let other = TenantId::generate();
    store
        .create_tenant(&Tenant {
            id: other,
            name: "other".into(),
            created_at: start_time(),
        })
        .await
        .unwrap();
    let admin_b = Principal::Admin { tenant: other };
    let dora = w
        .api
        .service
        .create_human(
            &admin_b,
            serde_json::from_value(json!({"display_name": "Dora", "email": "dora@other.example", "groups": ["mandate-admins"]})).unwrap(),
        )
        .await
        .unwrap();
    w.api
        .service
        .set_password(&admin_b, dora.id, Secret::new(PASSWORD.to_owned()))
        .await
        .unwrap();
    let bot = w
        .api
        .service
        .create_agent(
            &admin_b,
            serde_json::from_value(json!({"name": "other-tenant-bot", "owner": dora.id})).unwrap(),
        )
        .await
        .unwrap();
    let theirs = w
        .api
        .service
        .request_mandate(
            &admin_b,
            serde_json::from_value(json!({
                "agent_id": bot.id, "human_id": dora.id, "intent": "Secret plans of the other tenant",
                "scope": {"tools": [{"tool": "x.y"}]}, "data_ceiling": "public", "mode": "execute",
                "expires_at": (start_time() + Duration::hours(1)).to_rfc3339(),
            }))
            .unwrap(),
        )
        .await
        .unwrap()
        .mandate
        .id;

    // Carol is in Alice's tenant but has nothing to do with the mandate.
    let carol = w
        .api
        .get("/v1/humans?email=carol@example.com", &w.api.admin)
        .await
        .ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    with_password(&w, &carol).await;
    let mut c = Browser::new(&w.api);
    c.sign_in("carol@example.com", PASSWORD).await;
    let (r, _) = c.get(&format!("/ui/mandates/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let (_, list) = c.get("/ui/mandates").await;
    assert!(!list.contains("Lisbon"));

    // Dora administers her tenant: Alice's tenant does not exist for her, and back.
    let mut d = Browser::new(&w.api);
    d.sign_in("dora@other.example", PASSWORD).await;
    let (r, _) = d.get(&format!("/ui/mandates/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let (_, list) = d.get("/ui/mandates?status=all").await;
    assert!(
        list.contains("Secret plans") && !list.contains("Lisbon"),
        "{list}"
    );
    let mut a = Browser::new(&w.api);
    a.sign_in("alice@example.com", PASSWORD).await;
    let (r, _) = a.get(&format!("/ui/mandates/{theirs}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let (_, list) = a.get("/ui/mandates?status=all").await;
    assert!(list.contains("Lisbon") && !list.contains("Secret plans"));
    // Bad filters are reported, not ignored.
    let (r, page) = a.get("/ui/mandates?status=bogus&agent=nope").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Unknown status") && page.contains("agent id"));
}

/// The session an external identity provider vouches for: the tenant's human with that
/// email (any case), never a new one, never a locked account.
#[tokio::test]
async fn an_external_sign_in_opens_a_session_only_for_an_existing_unlocked_human() {
    let w = World::new().await;
    let service = &w.api.service;
    let (secret, signed) = service
        .sign_in_external("default", " Alice@Example.COM ", "https://idp.example")
        .await
        .unwrap();
    assert_eq!(signed.human.id.to_string(), w.alice);
    let again = service
        .console_session(secret.expose())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.human.id.to_string(), w.alice);

    for (tenant, email) in [
        ("default", "nobody@example.com"),
        ("no-such-tenant", "alice@example.com"),
        ("default", ""),
    ] {
        assert!(
            matches!(
                service
                    .sign_in_external(tenant, email, "https://idp.example")
                    .await,
                Err(mandate_core::CoreError::Unauthenticated)
            ),
            "{tenant} {email}"
        );
    }

    // Bob's local account locks after repeated wrong passwords: the IdP cannot unlock it.
    with_password(&w, &w.bob).await;
    for _ in 0..mandate_core::LOCK_AFTER_FAILURES {
        let _ = service
            .sign_in(
                "bob@example.com",
                mandate_types::Secret::new("wrong password!".into()),
            )
            .await;
    }
    assert!(matches!(
        service
            .sign_in_external("default", "bob@example.com", "https://idp.example")
            .await,
        Err(mandate_core::CoreError::Unauthenticated)
    ));
}
