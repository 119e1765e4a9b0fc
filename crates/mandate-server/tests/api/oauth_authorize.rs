//! The OAuth authorization endpoint in-process: strict dynamic registration, the
//! authorization request's checks (a bad client or redirect URI is never redirected to),
//! the consent screen (CSRF, someone else's request, re-validation), and the
//! authorization_code grant (PKCE S256, single use with revocation on replay, bound
//! client, redirect URI and resource). The browser flow with a real MCP client is
//! `crates/mandate/tests/oauth_consent.rs`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Api, Reply};

pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const PUBLIC: &str = mandate_server::DEFAULT_PUBLIC_URL;
pub(crate) const REDIRECT: &str = "http://127.0.0.1:4711/callback";
pub(crate) const VERIFIER: &str = "a-verifier-of-forty-three-or-more-characters-0123456789";

pub(crate) fn challenge(verifier: &str) -> String {
    mandate_jose::b64url_encode(&Sha256::digest(verifier.as_bytes()))
}

pub(crate) fn location(reply: &Reply) -> String {
    reply
        .headers
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub(crate) fn query_of(url: &str) -> BTreeMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// One browser: a cookie jar over the in-process app.
pub(crate) struct Browser<'a> {
    api: &'a Api,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    pub(crate) fn new(api: &'a Api) -> Self {
        Self {
            api,
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> (Reply, String) {
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
            let (pair, _) = set.to_str().unwrap().split_once(';').unwrap();
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
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(request, Body::from(body)).await
    }

    pub(crate) async fn sign_in(&mut self, email: &str) {
        let (_, page) = self.get("/ui/login?next=/ui/").await;
        let csrf = hidden(&page, "csrf");
        let (r, _) = self
            .post(
                "/ui/login",
                &[
                    ("csrf", &csrf),
                    ("next", "/ui/"),
                    ("email", email),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "sign-in of {email}");
    }
}

pub(crate) struct Setup {
    pub(crate) api: Api,
    pub(crate) alice: String,
    pub(crate) client: String,
}

pub(crate) async fn json_post(api: &Api, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
    api.raw(
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

pub(crate) async fn register(api: &Api, metadata: &Value) -> Reply {
    json_post(
        api,
        "/oauth2/register",
        "application/json",
        metadata.to_string().into_bytes(),
    )
    .await
}

impl Setup {
    pub(crate) async fn new() -> Setup {
        Setup::on(Api::with_tokens().await).await
    }

    /// Alice, Bob, the `fx` server and a registered client, on `api`.
    pub(crate) async fn on(api: Api) -> Setup {
        let mut people = Vec::new();
        for (name, email) in [("Alice", "alice@example.com"), ("Bob", "bob@example.com")] {
            let id = api
                .post(
                    "/v1/humans",
                    &api.admin,
                    &json!({"display_name": name, "email": email}),
                )
                .await
                .ok(201)["id"]
                .as_str()
                .unwrap()
                .to_owned();
            api.send(
                Method::PUT,
                &format!("/v1/humans/{id}/password"),
                Some(&api.admin),
                Some(&json!({"password": PASSWORD})),
            )
            .await
            .ok(204);
            people.push(id);
        }
        let server = api
            .post(
                "/v1/tool-servers",
                &api.admin,
                &json!({"name": "fx", "transport": {"kind": "mcp_http", "url": "http://127.0.0.1:9/mcp"}}),
            )
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for (name, tier) in [("echo", "read"), ("wipe", "high_impact")] {
            api.post(
                "/v1/tools",
                &api.admin,
                &json!({"server_id": server, "name": name, "risk_tier": tier}),
            )
            .await
            .ok(201);
        }
        let client = register(
            &api,
            &json!({"client_name": "Test Client", "redirect_uris": [REDIRECT],
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"]}),
        )
        .await
        .ok(201)["client_id"]
            .as_str()
            .unwrap()
            .to_owned();
        Setup {
            api,
            alice: people[0].clone(),
            client,
        }
    }

    pub(crate) fn authorize_url(&self, overrides: &[(&str, Option<&str>)]) -> String {
        let challenge = challenge(VERIFIER);
        let mut params: Vec<(&str, Option<&str>)> = vec![
            ("response_type", Some("code")),
            ("client_id", Some(&self.client)),
            ("redirect_uri", Some(REDIRECT)),
            ("state", Some("st-1")),
            ("code_challenge", Some(&challenge)),
            ("code_challenge_method", Some("S256")),
            ("resource", Some("http://127.0.0.1:8731/mcp/fx")),
        ];
        for (k, v) in overrides {
            if let Some(p) = params.iter_mut().find(|(n, _)| n == k) {
                p.1 = *v;
            } else {
                params.push((k, *v));
            }
        }
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().filter_map(|(k, v)| v.map(|v| (*k, v))))
            .finish();
        format!("/oauth2/authorize?{query}")
    }

    /// Alice's browser through the consent screen: the request id and the page.
    async fn consent_screen<'a>(&'a self, b: &mut Browser<'a>) -> (String, String) {
        let (r, page) = b.get(&self.authorize_url(&[])).await;
        assert_eq!(r.status, StatusCode::OK, "{page}");
        (hidden(&page, "request"), page)
    }

    /// Alice grants `fx.echo`: the code.
    pub(crate) async fn code(&self, b: &mut Browser<'_>) -> String {
        self.code_for(b, "http://127.0.0.1:8731/mcp/fx", "fx.echo")
            .await
    }

    /// Alice grants `tool` for `resource`: the code.
    pub(crate) async fn code_for(&self, b: &mut Browser<'_>, resource: &str, tool: &str) -> String {
        self.code_with(b, resource, tool, "10").await
    }

    /// Alice grants `tool` for `resource` with a budget of `max_calls`: the code.
    pub(crate) async fn code_with(
        &self,
        b: &mut Browser<'_>,
        resource: &str,
        tool: &str,
        max_calls: &str,
    ) -> String {
        let (r, page) = b
            .get(&self.authorize_url(&[("resource", Some(resource))]))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{page}");
        self.grant(b, &page, &[tool], max_calls).await
    }

    /// Alice grants `tools` with a budget of `max_calls` on the consent screen `page`:
    /// the code.
    pub(crate) async fn grant(
        &self,
        b: &mut Browser<'_>,
        page: &str,
        tools: &[&str],
        max_calls: &str,
    ) -> String {
        let (csrf, request) = (hidden(page, "csrf"), hidden(page, "request"));
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("request", request.as_str()),
            ("decision", "grant"),
            ("intent", "Echo things"),
            ("lifetime", "60"),
            ("max_calls", max_calls),
            ("mode", "execute"),
            ("approve", "high_impact"),
            ("data_ceiling", "internal"),
        ];
        form.extend(tools.iter().map(|t| ("tool", *t)));
        let (r, _) = b.post("/oauth2/authorize", &form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
        let to = location(&r);
        assert!(to.starts_with(REDIRECT), "{to}");
        let q = query_of(&to);
        assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
        assert_eq!(q.get("iss").map(String::as_str), Some(PUBLIC));
        q["code"].clone()
    }

    pub(crate) async fn redeem(&self, fields: &[(&str, &str)]) -> Reply {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        json_post(
            &self.api,
            "/oauth2/token",
            "application/x-www-form-urlencoded",
            body.into_bytes(),
        )
        .await
    }

    pub(crate) async fn redeem_code(&self, code: &str) -> Reply {
        self.redeem_code_for(code, "http://127.0.0.1:8731/mcp/fx")
            .await
    }

    pub(crate) async fn redeem_code_for(&self, code: &str, resource: &str) -> Reply {
        self.redeem(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &self.client),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", resource),
        ])
        .await
    }
}

#[track_caller]
pub(crate) fn oauth_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    assert_eq!(reply.body["error"], code, "{}", reply.body);
}

#[tokio::test]
async fn registration_is_strict_and_registers_public_clients() {
    let s = Setup::new().await;
    let ok = register(
        &s.api,
        &json!({"client_name": "A", "redirect_uris": ["https://app.example/cb", "http://localhost:9/cb"],
                "unknown_member": {"ignored": true}}),
    )
    .await;
    let body = ok.ok(201);
    assert!(body["client_id"].as_str().unwrap().starts_with("mcl_"));
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert!(body.get("unknown_member").is_none());
    assert!(body.get("client_secret").is_none());

    for (metadata, code) in [
        (json!({"client_name": "x"}), "invalid_redirect_uri"),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://127.0.0.1.evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": [7]}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "client_name": "n".repeat(101)}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "client_name": "bell\u{7}"}),
            "invalid_client_metadata",
        ),
    ] {
        let r = register(&s.api, &metadata).await;
        oauth_error(&r, 400, code);
        assert!(r.body["error_description"].as_str().is_some(), "{metadata}");
    }
    // Oversized, not JSON, not an object, wrong content type.
    let big = json!({"redirect_uris": [REDIRECT], "padding": "x".repeat(20_000)});
    oauth_error(
        &register(&s.api, &big).await,
        400,
        "invalid_client_metadata",
    );
    let r = json_post(
        &s.api,
        "/oauth2/register",
        "application/json",
        b"{".to_vec(),
    )
    .await;
    oauth_error(&r, 400, "invalid_client_metadata");
    let r = json_post(
        &s.api,
        "/oauth2/register",
        "application/json",
        b"[]".to_vec(),
    )
    .await;
    oauth_error(&r, 400, "invalid_client_metadata");
    let r = json_post(
        &s.api,
        "/oauth2/register",
        "text/plain",
        json!({"redirect_uris": [REDIRECT]})
            .to_string()
            .into_bytes(),
    )
    .await;
    oauth_error(&r, 400, "invalid_client_metadata");

    // The metadata says where to go.
    let meta = s
        .api
        .get("/.well-known/oauth-authorization-server", "")
        .await;
    let meta = meta.ok(200);
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{PUBLIC}/oauth2/authorize")
    );
    assert_eq!(
        meta["registration_endpoint"],
        format!("{PUBLIC}/oauth2/register")
    );
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    for grant in ["authorization_code", "refresh_token"] {
        assert!(
            meta["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(grant)),
            "{grant}"
        );
    }
}

#[tokio::test]
async fn bad_authorization_requests_are_shown_or_sent_back_never_elsewhere() {
    let s = Setup::new().await;
    let mut b = Browser::new(&s.api);

    // Client or redirect URI untrusted: a page here, no Location, whoever asks.
    for url in [
        s.authorize_url(&[("client_id", Some("mcl_unknown"))]),
        s.authorize_url(&[("client_id", None)]),
        s.authorize_url(&[("redirect_uri", Some("http://127.0.0.1:4711/elsewhere"))]),
        s.authorize_url(&[("redirect_uri", Some("https://evil.example/callback"))]),
        format!("{}&client_id=again", s.authorize_url(&[])),
    ] {
        let (r, page) = b.get(&url).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {page}");
        assert!(location(&r).is_empty(), "{url} redirected");
        assert!(page.contains("role=\"alert\""), "{page}");
    }

    // Not signed in: to the sign-in page, and back to this very request after.
    let (r, _) = b.get(&s.authorize_url(&[])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(
        to.starts_with("/ui/login?next=%2Foauth2%2Fauthorize%3F"),
        "{to}"
    );
    let next = query_of(&to)["next"].clone();
    b.sign_in("alice@example.com").await;
    let (r, page) = b.get(&next).await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(page.contains("Authorize Test Client"), "{page}");
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:4711"),
        "{csp}"
    );

    // Everything else goes back to the registered redirect URI with error= and state.
    for (overrides, error) in [
        (vec![("code_challenge", None)], "invalid_request"),
        (vec![("code_challenge_method", None)], "invalid_request"),
        (
            vec![("code_challenge_method", Some("plain"))],
            "invalid_request",
        ),
        (
            vec![("code_challenge", Some("too-short"))],
            "invalid_request",
        ),
        (
            vec![("response_type", Some("token"))],
            "unsupported_response_type",
        ),
        (vec![("resource", None)], "invalid_target"),
        (
            vec![("resource", Some("https://evil.example/mcp"))],
            "invalid_target",
        ),
        (
            vec![("resource", Some("http://127.0.0.1:8731/mcp/nope"))],
            "invalid_target",
        ),
        (
            vec![("resource", Some("http://127.0.0.1:8731/v1"))],
            "invalid_target",
        ),
    ] {
        let (r, page) = b.get(&s.authorize_url(&overrides)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{overrides:?}: {page}");
        let to = location(&r);
        assert!(to.starts_with(&format!("{REDIRECT}?")), "{to}");
        let q = query_of(&to);
        assert_eq!(q["error"], error, "{overrides:?}");
        assert_eq!(q["state"], "st-1");
        // RFC 9207: every authorization response names its issuer.
        assert_eq!(q["iss"], PUBLIC, "{overrides:?}");
        assert!(!q.contains_key("code"));
    }
    // The whole gateway is a resource too.
    let (r, page) = b
        .get(&s.authorize_url(&[("resource", Some("http://127.0.0.1:8731/mcp"))]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    // A server with nothing to offer: invalid_scope, with state and iss too.
    s.api
        .post(
            "/v1/tool-servers",
            &s.api.admin,
            &json!({"name": "empty", "transport": {"kind": "mcp_http", "url": "http://127.0.0.1:9/mcp"}}),
        )
        .await
        .ok(201);
    let (r, page) = b
        .get(&s.authorize_url(&[("resource", Some("http://127.0.0.1:8731/mcp/empty"))]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}");
    let q = query_of(&location(&r));
    assert_eq!(q["error"], "invalid_scope");
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], PUBLIC);
}

#[tokio::test]
async fn the_consent_form_is_bound_to_its_person_session_and_request() {
    let s = Setup::new().await;
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    let (request, page) = s.consent_screen(&mut alice).await;
    assert!(
        page.contains("fx.echo") && page.contains("fx.wipe"),
        "{page}"
    );
    assert!(page.contains("high_impact"), "{page}");
    let csrf = hidden(&page, "csrf");
    let grant = |csrf: String, request: String| {
        vec![
            ("csrf".to_owned(), csrf),
            ("request".to_owned(), request),
            ("decision".to_owned(), "grant".to_owned()),
            ("intent".to_owned(), "Echo things".to_owned()),
            ("tool".to_owned(), "fx.echo".to_owned()),
            ("lifetime".to_owned(), "60".to_owned()),
            ("mode".to_owned(), "execute".to_owned()),
            ("data_ceiling".to_owned(), "internal".to_owned()),
        ]
    };
    async fn post_pairs(b: &mut Browser<'_>, pairs: &[(String, String)]) -> (Reply, String) {
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        b.post("/oauth2/authorize", &refs).await
    }

    // Without the CSRF token: refused, nothing created.
    let mut no_csrf = grant(String::new(), request.clone());
    no_csrf.remove(0);
    let (r, _) = post_pairs(&mut alice, &no_csrf).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Bob, signed in himself, posts Alice's request with his own token: not found.
    let mut bob = Browser::new(&s.api);
    bob.sign_in("bob@example.com").await;
    let (_, bob_page) = bob.get("/ui/").await;
    let bob_csrf = hidden(&bob_page, "csrf");
    let (r, _) = post_pairs(&mut bob, &grant(bob_csrf, request.clone())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Alice in another session (another browser) cannot answer it either.
    let mut alice2 = Browser::new(&s.api);
    alice2.sign_in("alice@example.com").await;
    let (_, page2) = alice2.get("/ui/").await;
    let (r, _) = post_pairs(&mut alice2, &grant(hidden(&page2, "csrf"), request.clone())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A made-up request id.
    let (r, _) = post_pairs(&mut alice, &grant(csrf.clone(), "made-up".into())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Re-validated: no intent, a tool not offered, no tool, a lifetime not offered.
    for (field, value) in [
        ("intent", ""),
        ("tool", "fx.secret_tool"),
        ("tool", ""),
        ("lifetime", "999999"),
        ("mode", "yolo"),
    ] {
        let mut pairs = grant(csrf.clone(), request.clone());
        pairs.retain(|(k, _)| k != field);
        pairs.push((field.to_owned(), value.to_owned()));
        let (r, page) = post_pairs(&mut alice, &pairs).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}={value}: {page}");
        assert!(page.contains("role=\"alert\""), "{page}");
        assert_eq!(hidden(&page, "request"), request, "the request stays open");
    }
    let mandates = s.api.get("/v1/mandates", &s.api.admin).await;
    assert_eq!(mandates.ok(200)["items"], json!([]), "nothing was created");

    // The real answer, once.
    let (r, _) = post_pairs(&mut alice, &grant(csrf.clone(), request.clone())).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with(REDIRECT));
    let (r, _) = post_pairs(&mut alice, &grant(csrf.clone(), request.clone())).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "answered requests are gone"
    );

    // Deny: back to the client with access_denied; no mandate for it.
    let (request, page) = s.consent_screen(&mut alice).await;
    let (r, _) = alice
        .post(
            "/oauth2/authorize",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("request", &request),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let q = query_of(&location(&r));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["iss"], PUBLIC);
    assert_eq!(q["state"], "st-1");
    let mandates = s.api.get("/v1/mandates", &s.api.admin).await;
    assert_eq!(mandates.ok(200)["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn codes_are_single_use_bound_and_checked_with_pkce() {
    let s = Setup::new().await;
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;

    // Missing pieces are refused before the code is touched.
    let code = s.code(&mut alice).await;
    for missing in ["code_verifier", "client_id", "code"] {
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", s.client.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        fields.retain(|(k, _)| *k != missing);
        oauth_error(&s.redeem(&fields).await, 400, "invalid_request");
    }
    // A wrong verifier: refused, and the code is spent.
    let wrong = s
        .redeem(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &s.client),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "another-verifier-of-forty-three-characters-000000",
            ),
        ])
        .await;
    oauth_error(&wrong, 400, "invalid_grant");
    oauth_error(&s.redeem_code(&code).await, 400, "invalid_grant");

    // Another client may not redeem Alice's client's code.
    let other = register(&s.api, &json!({"redirect_uris": [REDIRECT]}))
        .await
        .ok(201)["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = s.code(&mut alice).await;
    let stolen = s
        .redeem(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &other),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    oauth_error(&stolen, 400, "invalid_grant");
    // Another redirect URI, another resource.
    let code = s.code(&mut alice).await;
    let r = s
        .redeem(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &s.client),
            ("redirect_uri", "http://127.0.0.1:4711/other"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    oauth_error(&r, 400, "invalid_grant");
    let code = s.code(&mut alice).await;
    let r = s
        .redeem(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &s.client),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", "http://127.0.0.1:8731/mcp"),
        ])
        .await;
    oauth_error(&r, 400, "invalid_target");
    // A made-up code.
    oauth_error(&s.redeem_code("mac_made-up").await, 400, "invalid_grant");

    // The real redemption: a task token of the new mandate, sub = Alice, act = the agent.
    let code = s.code(&mut alice).await;
    let issued = s.redeem_code(&code).await;
    let body = issued.ok(200).clone();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "fx.echo");
    assert!(body["refresh_token"].as_str().unwrap().starts_with("mrt_"));
    let token = body["access_token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&mandate_jose::b64url_decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], json!(s.alice));
    let aud = claims["aud"].to_string();
    assert!(aud.contains(&format!("{PUBLIC}/mcp\"")), "{aud}");
    let mandate = claims["mandate"].as_str().unwrap().to_owned();
    let agent = claims["act"]["sub"].as_str().unwrap().to_owned();
    let view = s
        .api
        .get(&format!("/v1/mandates/{mandate}"), &s.api.admin)
        .await
        .ok(200)
        .clone();
    assert_eq!(view["status"], "active");
    assert_eq!(view["terms"]["agent_id"], json!(agent));
    assert_eq!(view["consents"][0]["channel"], "oauth");
    // The same client acting for the same person is one agent.
    assert_eq!(
        s.api.get("/v1/agents", &s.api.admin).await.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["oauth.client_id"] == json!(s.client))
            .count(),
        1
    );

    // Replay: refused, and the mandate (with the token it gave) is revoked.
    oauth_error(&s.redeem_code(&code).await, 400, "invalid_grant");
    let view = s
        .api
        .get(&format!("/v1/mandates/{mandate}"), &s.api.admin)
        .await;
    assert_eq!(view.ok(200)["status"], "revoked");
    let auth = format!("Bearer {}", s.api.admin);
    let introspected = s
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
    assert_eq!(introspected.ok(200)["active"], false);

    // A code outlives nothing: after its 60 s it is refused.
    let code = s.code(&mut alice).await;
    s.api.clock.advance(chrono::Duration::seconds(61));
    oauth_error(&s.redeem_code(&code).await, 400, "invalid_grant");
}

/// Serves client metadata documents on loopback: `docs(base)` gives path → body.
async fn document_server(docs: impl FnOnce(&str) -> Vec<(&'static str, String)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut router = axum::Router::new();
    for (path, body) in docs(&base) {
        router = router.route(
            path,
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
    }
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_checked_and_used() {
    let mut s = Setup::new().await;
    let base = document_server(|base| {
        vec![
            (
                "/good.json",
                json!({"client_id": format!("{base}/good.json"), "client_name": "Doc Client",
                       "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
                .to_string(),
            ),
            (
                "/other.json",
                json!({"client_id": "https://elsewhere.example/c.json", "redirect_uris": [REDIRECT]})
                    .to_string(),
            ),
            (
                "/big.json",
                json!({"client_id": format!("{base}/big.json"), "redirect_uris": [REDIRECT],
                       "padding": "x".repeat(10_000)})
                .to_string(),
            ),
            (
                "/insecure.json",
                json!({"client_id": format!("{base}/insecure.json"),
                       "redirect_uris": ["http://evil.example/cb"]})
                .to_string(),
            ),
        ]
    })
    .await;
    let good = format!("{base}/good.json");
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    // Without the (test-only) loopback allowance an http document URL names no client.
    let (r, _) = alice
        .get(&s.authorize_url(&[("client_id", Some(&good))]))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(location(&r).is_empty());

    let fetcher = mandate_token::ClientMetadataFetcher::new(mandate_token::ClientMetadataOptions {
        dangerous_allow_http_loopback: true,
        ..mandate_token::ClientMetadataOptions::default()
    })
    .unwrap();
    s.api.service = s
        .api
        .service
        .clone()
        .with_client_metadata_documents(std::sync::Arc::new(fetcher));
    s.api.app = mandate_server::app(
        s.api.service.clone(),
        mandate_server::Metrics::new("sqlite"),
    );
    let meta = s
        .api
        .get("/.well-known/oauth-authorization-server", "")
        .await;
    assert_eq!(meta.ok(200)["client_id_metadata_document_supported"], true);

    // Refused documents: another client_id inside, too large, a bad redirect URI, absent.
    for path in [
        "/other.json",
        "/big.json",
        "/insecure.json",
        "/missing.json",
    ] {
        let url = format!("{base}{path}");
        let mut b = Browser::new(&s.api);
        b.sign_in("alice@example.com").await;
        let (r, page) = b.get(&s.authorize_url(&[("client_id", Some(&url))])).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {page}");
        assert!(location(&r).is_empty(), "{path} redirected");
        assert!(page.contains("metadata document is refused"), "{page}");
    }

    // The document's client: consent, code, token.
    let mut b = Browser::new(&s.api);
    b.sign_in("alice@example.com").await;
    let (r, page) = b.get(&s.authorize_url(&[("client_id", Some(&good))])).await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(page.contains("Authorize Doc Client"), "{page}");
    let (r, _) = b
        .post(
            "/oauth2/authorize",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("request", &hidden(&page, "request")),
                ("decision", "grant"),
                ("intent", "Echo things"),
                ("tool", "fx.echo"),
                ("lifetime", "60"),
                ("mode", "execute"),
                ("data_ceiling", "internal"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let code = query_of(&location(&r))["code"].clone();
    let issued = s
        .redeem(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &good),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(issued.ok(200)["scope"], "fx.echo");
}

#[tokio::test]
async fn registrations_are_rate_limited() {
    let api = Api::with_tokens().await;
    let metadata = json!({"redirect_uris": [REDIRECT]});
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(register(&api, &metadata).await.status.as_u16());
    }
    // REGISTRATIONS_PER_MINUTE, as documented.
    let allowed = 20;
    assert!(
        statuses[..allowed].iter().all(|s| *s == 201),
        "{statuses:?}"
    );
    let refused = register(&api, &metadata).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["error"], "temporarily_unavailable");
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    assert!(
        statuses[allowed..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
}

/// Two replicas (two apps on one store) count into the same window: the limit holds
/// behind a load balancer; the next minute starts a new window.
#[tokio::test]
async fn the_registration_limit_is_shared_by_replicas_and_resets_each_minute() {
    use tower::ServiceExt as _;
    let api = Api::with_tokens().await;
    let other = mandate_server::app_with_gateway(
        api.service.clone(),
        mandate_server::Metrics::new("sqlite"),
        mandate_server::DEFAULT_PUBLIC_URL,
        None,
    );
    let metadata = json!({"redirect_uris": [REDIRECT]});
    let on_other = || async {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/oauth2/register")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(metadata.to_string()))
            .unwrap();
        other.clone().oneshot(request).await.unwrap().status()
    };
    for _ in 0..10 {
        assert_eq!(register(&api, &metadata).await.status, StatusCode::CREATED);
        assert_eq!(on_other().await, StatusCode::CREATED);
    }
    assert_eq!(on_other().await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        register(&api, &metadata).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    api.clock.advance(chrono::Duration::seconds(60));
    assert_eq!(on_other().await, StatusCode::CREATED);
}

#[tokio::test]
async fn each_mcp_server_has_protected_resource_metadata_by_path_insertion() {
    let api = Api::with_gateway().await;
    let whole = api
        .get("/.well-known/oauth-protected-resource/mcp", "")
        .await;
    assert_eq!(whole.ok(200)["resource"], format!("{PUBLIC}/mcp"));
    // RFC 9728 §3.1: `{public}/mcp/fx` is described at the well-known path inserted
    // before its path.
    let one = api
        .get("/.well-known/oauth-protected-resource/mcp/fx", "")
        .await;
    let body = one.ok(200);
    assert_eq!(body["resource"], format!("{PUBLIC}/mcp/fx"));
    assert_eq!(body["authorization_servers"], json!([PUBLIC]));
    // RFC 9728 §3.3: metadata named by a 401's `resource_metadata` must describe exactly
    // the URL the client requested. Naming the whole `/mcp` for `/mcp/fx` gave clients
    // two resources for one server (the challenge's and the well-known path's): the
    // TypeScript SDK redeemed the code issued for one with the other (invalid_target).
    for path in ["/mcp", "/mcp/fx"] {
        let refused = api
            .raw(
                Request::builder()
                    .method(Method::POST)
                    .uri(path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path}");
        let challenge = refused.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        let named = challenge
            .split("resource_metadata=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("{challenge}"));
        let metadata = api.get(named.strip_prefix(PUBLIC).unwrap(), "").await;
        assert_eq!(
            metadata.ok(200)["resource"],
            format!("{PUBLIC}{path}"),
            "{path}: {challenge}"
        );
    }
    // A hostile server name (here a quote and a parameter, percent-encoded in the path)
    // never reaches the challenge: it gets the metadata of /mcp.
    let hostile = api
        .raw(
            Request::builder()
                .method(Method::POST)
                .uri("/mcp/x%22,error=%22evil")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(hostile.status, StatusCode::UNAUTHORIZED);
    let challenge = hostile.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{PUBLIC}/.well-known/oauth-protected-resource/mcp\""
        )) && !challenge.contains("evil"),
        "{challenge}"
    );
}

#[tokio::test]
async fn native_clients_may_redirect_to_private_use_schemes() {
    let s = Setup::new().await;
    for metadata in [
        // A private-use scheme is for native clients only (RFC 8252 §7.1)…
        json!({"redirect_uris": ["com.example.app:/cb"]}),
        json!({"redirect_uris": ["com.example.app:/cb"], "application_type": "web"}),
        // …and never a dangerous one.
        json!({"redirect_uris": ["javascript:/alert(1)"], "application_type": "native"}),
        json!({"redirect_uris": ["myapp:/cb"], "application_type": "native"}),
    ] {
        oauth_error(
            &register(&s.api, &metadata).await,
            400,
            "invalid_redirect_uri",
        );
    }
    // A native client with a private-use scheme redirect is registered, and its
    // authorization response goes there (the consent form's CSP allows the scheme).
    let native = register(
        &s.api,
        &json!({"client_name": "Native", "application_type": "native",
                "redirect_uris": ["com.example.app:/oauth2redirect"]}),
    )
    .await;
    let native = native.ok(201).clone();
    assert_eq!(
        native["redirect_uris"],
        json!(["com.example.app:/oauth2redirect"])
    );
    let native_id = native["client_id"].as_str().unwrap().to_owned();
    let mut b = Browser::new(&s.api);
    b.sign_in("alice@example.com").await;
    let (r, page) = b
        .get(&s.authorize_url(&[
            ("client_id", Some(&native_id)),
            ("redirect_uri", Some("com.example.app:/oauth2redirect")),
        ]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("form-action 'self' com.example.app:"), "{csp}");
    let (r, _) = b
        .post(
            "/oauth2/authorize",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("request", &hidden(&page, "request")),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(
        to.starts_with("com.example.app:/oauth2redirect?error=access_denied"),
        "{to}"
    );
}

/// The MCP TypeScript SDK's own OAuth example (`simpleOAuthClient.ts`) registers with
/// `token_endpoint_auth_method: client_secret_post`. We issue no secrets: RFC 7591
/// §3.2.1 lets the server register what it supports and say so, so the client is
/// registered public (`none`, no secret) and completes the code + PKCE flow.
#[tokio::test]
async fn clients_asking_for_a_secret_are_registered_public_and_complete_the_flow() {
    let mut s = Setup::new().await;
    for method in ["client_secret_post", "client_secret_basic"] {
        // The SDK example's body, with our test redirect URI.
        let reply = register(
            &s.api,
            &json!({"client_name": "Simple OAuth MCP Client", "redirect_uris": [REDIRECT],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": method, "scope": "mcp:tools"}),
        )
        .await;
        let body = reply.ok(201).clone();
        assert_eq!(body["token_endpoint_auth_method"], "none", "{body}");
        assert!(body.get("client_secret").is_none(), "{body}");
        assert!(body.get("client_secret_expires_at").is_none(), "{body}");
        s.client = body["client_id"].as_str().unwrap().to_owned();

        let mut alice = Browser::new(&s.api);
        alice.sign_in("alice@example.com").await;
        let code = s.code(&mut alice).await;
        let tokens = s.redeem_code(&code).await;
        let tokens = tokens.ok(200);
        assert!(tokens["access_token"].as_str().is_some(), "{tokens}");
        assert!(tokens["refresh_token"].as_str().is_some(), "{tokens}");
    }
}
