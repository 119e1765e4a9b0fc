//! The console's operator pages in-process: agents, tools, policies and audit for the
//! tenant's admins (and "nothing here" for everyone else), forms that change state only
//! through the use cases with visible messages for bad input, tenant isolation, and the
//! delegation tree on the mandate page.

use axum::http::StatusCode;
use chrono::Duration;
use mandate_domain::{Principal, Tenant};
use mandate_types::TenantId;
use serde_json::{Value, json};

use crate::console::{Browser, PASSWORD, location, with_password};
use crate::support::{World, start_time};
use crate::tokens::Setup;

const NOTHING_HERE: &str = "There is nothing here, or you may not see it.";

/// Olga administers Alice's tenant; a tool server (with a credential reference and a
/// URL carrying a password) and one tool are registered.
struct Admin {
    w: World,
    tool: String,
}

impl Admin {
    async fn new() -> Admin {
        let w = World::new().await;
        let olga = w
            .api
            .post(
                "/v1/humans",
                &w.api.admin,
                &json!({"display_name": "Olga", "email": "olga@example.com", "groups": ["mandate-admins"]}),
            )
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for h in [&olga, &w.alice] {
            with_password(&w, h).await;
        }
        let server = w
            .api
            .post(
                "/v1/tool-servers",
                &w.api.admin,
                &json!({"name": "bank", "transport": {"kind": "mcp_http", "url": "https://svc:hunter2@bank.example/mcp"},
                        "credential_ref": "secret:bank-api-key"}),
            )
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        w.api
            .post(
                "/v1/tool-servers",
                &w.api.admin,
                &json!({"name": "files", "transport": {"kind": "mcp_stdio", "command": "mcp-files", "args": ["--token", "argsecret"]}}),
            )
            .await
            .ok(201);
        let tool = w
            .api
            .post(
                "/v1/tools",
                &w.api.admin,
                &json!({"server_id": server, "name": "transfer", "description": "Move money", "tags": ["financial"]}),
            )
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        Admin { w, tool }
    }

    async fn browser(&self, email: &str) -> Browser<'_> {
        let mut b = Browser::new(&self.w.api);
        let (r, _) = b.sign_in(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        b
    }

    async fn tool(&self) -> Value {
        self.w
            .api
            .get(&format!("/v1/tools/{}", self.tool), &self.w.api.admin)
            .await
            .ok(200)
            .clone()
    }

    async fn agent(&self) -> Value {
        self.w
            .api
            .get(&format!("/v1/agents/{}", self.w.agent), &self.w.api.admin)
            .await
            .ok(200)
            .clone()
    }
}

#[track_caller]
fn shown(status: StatusCode, page: &str, want: StatusCode) {
    assert_eq!(status, want, "{page}");
}

/// Every visible input, select and textarea has a label naming its id.
#[track_caller]
fn labelled(page: &str, path: &str) {
    for tag in ["<input ", "<select ", "<textarea "] {
        for rest in page.split(tag).skip(1) {
            let element = rest.split('>').next().unwrap();
            if element.contains("type=\"hidden\"") {
                continue;
            }
            let id = element
                .split("id=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("{tag} without id on {path}: {element}"));
            assert!(
                page.contains(&format!("<label for=\"{id}\"")),
                "no label for {id} on {path}"
            );
        }
    }
}

#[tokio::test]
async fn admins_see_every_operator_page_and_no_secret() {
    let a = Admin::new().await;
    let mut olga = a.browser("olga@example.com").await;
    let agent = a.w.agent.clone();
    let pages = [
        (
            "/ui/agents".to_owned(),
            vec!["travel-bot", "other-bot", "Alice", agent.as_str()],
        ),
        (
            format!("/ui/agents/{agent}"),
            vec![
                "travel-bot",
                "Credentials",
                "No credentials",
                "Disable this agent",
            ],
        ),
        (
            "/ui/tools".to_owned(),
            vec![
                "bank.transfer",
                "secret:bank-api-key",
                "bank.example/mcp",
                "mcp-files",
                "high_impact",
                "financial",
            ],
        ),
        (
            format!("/ui/tools/{}", a.tool),
            vec![
                "bank.transfer",
                "Move money",
                "name=\"risk_tier\"",
                "name=\"data_class\"",
                "name=\"tags\"",
            ],
        ),
        (
            "/ui/policies".to_owned(),
            vec!["The running set", "mandate.", "Validate", "Test a request"],
        ),
        (
            "/ui/audit".to_owned(),
            vec!["Verify the chain", "Search", "api_token.issued"],
        ),
    ];
    for (path, wanted) in &pages {
        let (r, page) = olga.get(path).await;
        shown(r.status, &page, StatusCode::OK);
        for want in wanted {
            assert!(page.contains(want), "{want} on {path}: {page}");
        }
        for secret in [
            "hunter2",
            "argsecret",
            a.w.api.admin.as_str(),
            a.w.agent_token.as_str(),
            "$argon2",
        ] {
            assert!(!page.contains(secret), "{secret} on {path}");
        }
        labelled(&page, path);
        if page.contains("<th") {
            assert!(
                !page.contains("<th>"),
                "column headers are scoped on {path}"
            );
        }
    }
    // The nav links to each of them.
    let (_, home) = olga.get("/ui/").await;
    for link in ["/ui/agents", "/ui/tools", "/ui/policies", "/ui/audit"] {
        assert!(home.contains(&format!("href=\"{link}\"")), "{link}");
    }
    // Bad ids in paths are "nothing here", never a 500.
    for path in [
        "/ui/agents/not-an-id".to_owned(),
        "/ui/agents/%00".to_owned(),
        "/ui/agents/agt_00000000000000000000000000000000".to_owned(),
        "/ui/tools/not-an-id".to_owned(),
        "/ui/tools/%00".to_owned(),
        format!("/ui/tools/{}", a.w.agent),
        format!("/ui/agents/{}", "a".repeat(5000)),
    ] {
        let (r, page) = olga.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {page}");
    }
    let (r, _) = olga.get("/ui/agents?status=bogus").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Hostile paging and filters: refused visibly or ignored, never a 500.
    for path in [
        "/ui/agents?after=%00garbage",
        "/ui/audit?after=99999999999999999999999",
        "/ui/audit?mandate=%3Cscript%3E",
    ] {
        let (r, page) = olga.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {page}");
        assert!(!page.contains("<script>"), "{path}");
    }
    // A cursor the store does not know is a position past every tool.
    let (r, page) = olga.get("/ui/tools?after=zzz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(page.contains("No more tools."), "{page}");
}

#[tokio::test]
async fn a_non_admin_is_refused_every_operator_page_and_form() {
    let a = Admin::new().await;
    let mut alice = a.browser("alice@example.com").await;
    let (_, home) = alice.get("/ui/").await;
    assert!(
        !home.contains("href=\"/ui/agents\""),
        "no admin nav for Alice"
    );
    let csrf = alice.csrf().await;
    let agent = a.w.agent.clone();
    for path in [
        "/ui/agents".to_owned(),
        format!("/ui/agents/{agent}"),
        "/ui/tools".to_owned(),
        format!("/ui/tools/{}", a.tool),
        "/ui/policies".to_owned(),
        "/ui/audit".to_owned(),
        "/ui/audit?type=consent.granted".to_owned(),
    ] {
        let (r, page) = alice.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.contains(NOTHING_HERE), "{path}: {page}");
        assert!(
            !page.contains("travel-bot") && !page.contains("bank"),
            "{path}"
        );
    }
    let before = (a.tool().await, a.agent().await);
    for (path, fields) in [
        (
            format!("/ui/agents/{agent}/status"),
            vec![("status", "disabled")],
        ),
        (
            format!("/ui/tools/{}", a.tool),
            vec![
                ("risk_tier", "read"),
                ("data_class", "public"),
                ("tags", ""),
            ],
        ),
        (
            "/ui/policies/validate".to_owned(),
            vec![("text", "permit (principal, action, resource);")],
        ),
        (
            "/ui/policies/test".to_owned(),
            vec![
                ("subject_type", "User"),
                ("subject_id", "a"),
                ("action", "read"),
                ("resource_type", "Doc"),
                ("resource_id", "1"),
            ],
        ),
        ("/ui/audit/verify".to_owned(), vec![]),
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields);
        let (r, page) = alice.post(&path, &all).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {page}");
        assert!(page.contains(NOTHING_HERE));
    }
    assert_eq!((a.tool().await, a.agent().await), before, "nothing changed");
}

#[tokio::test]
async fn the_tool_form_sets_tier_tags_and_class_or_says_why_not() {
    let a = Admin::new().await;
    let mut olga = a.browser("olga@example.com").await;
    let path = format!("/ui/tools/{}", a.tool);
    let (_, page) = olga.get(&path).await;
    let csrf = Browser::hidden(&page, "csrf");

    let (r, _) = olga
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("risk_tier", "write"),
                ("data_class", "confidential"),
                ("tags", "financial, payments"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("{path}?done=saved"));
    let tool = a.tool().await;
    assert_eq!(tool["risk_tier"], "write");
    assert_eq!(tool["data_class"], "confidential");
    assert_eq!(tool["tags"], json!(["financial", "payments"]));
    let (_, page) = olga.get(&format!("{path}?done=saved")).await;
    assert!(page.contains("role=\"status\"") && page.contains("Saved"));

    let long_tag = "t".repeat(5000);
    let bad: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("risk_tier", "catastrophic"),
                ("data_class", "public"),
                ("tags", ""),
            ],
            "unknown risk tier `catastrophic`",
        ),
        (
            &[
                ("risk_tier", "read"),
                ("data_class", "top-secret"),
                ("tags", ""),
            ],
            "unknown data class `top-secret`",
        ),
        (
            &[
                ("risk_tier", "read"),
                ("data_class", "public"),
                ("tags", "Not_Lower"),
            ],
            "`tags` must be",
        ),
        (
            &[
                ("risk_tier", "read"),
                ("data_class", "public"),
                ("tags", long_tag.as_str()),
            ],
            "`tags` must be",
        ),
        (&[("data_class", "public")], "Choose a risk tier"),
    ];
    for (fields, message) in bad {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let (r, page) = olga.post(&path, &all).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{fields:?}: {page}");
        assert!(page.contains("role=\"alert\""), "{page}");
        assert!(page.contains(message), "{message} in {page}");
        assert!(page.contains("Nothing was changed"));
        assert_eq!(a.tool().await, tool, "nothing changed for {fields:?}");
    }
    // A body over the form limit is refused whole.
    let huge = "t".repeat(70 * 1024);
    let (r, page) = olga
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("risk_tier", "read"),
                ("data_class", "public"),
                ("tags", &huge),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("role=\"alert\"") && page.contains("too large"),
        "{page}"
    );
    assert_eq!(a.tool().await, tool);
    // A forged token changes nothing either.
    let (r, _) = olga
        .post(
            &path,
            &[
                ("csrf", "forged"),
                ("risk_tier", "read"),
                ("data_class", "public"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(a.tool().await, tool);
}

#[tokio::test]
async fn agents_are_disabled_and_enabled_through_the_form() {
    let a = Admin::new().await;
    let mut olga = a.browser("olga@example.com").await;
    let path = format!("/ui/agents/{}/status", a.w.agent);
    let csrf = olga.csrf().await;
    let (r, _) = olga
        .post(&path, &[("csrf", "forged"), ("status", "disabled")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(a.agent().await["status"], "active");
    let (r, page) = olga
        .post(&path, &[("csrf", &csrf), ("status", "exploded")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("role=\"alert\"") && page.contains("Choose active or disabled"));
    assert_eq!(a.agent().await["status"], "active");
    let (r, _) = olga
        .post(&path, &[("csrf", &csrf), ("status", "disabled")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(a.agent().await["status"], "disabled");
    // A disabled agent's API token no longer works.
    a.w.api
        .get("/v1/mandates", &a.w.agent_token)
        .await
        .problem(403, "forbidden");
    let (_, page) = olga
        .get(&format!("/ui/agents/{}?done=disabled", a.w.agent))
        .await;
    assert!(page.contains("Enable this agent"), "{page}");
    let (r, _) = olga
        .post(&path, &[("csrf", &csrf), ("status", "active")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(a.agent().await["status"], "active");
    // The agent's mandates are listed on its page.
    let id = a.w.requested().await;
    let (_, page) = olga.get(&format!("/ui/agents/{}", a.w.agent)).await;
    assert!(page.contains(&format!("/ui/mandates/{id}")), "{page}");
}

#[tokio::test]
async fn policies_are_validated_with_located_problems_and_requests_tested() {
    let a = Admin::new().await;
    let mut olga = a.browser("olga@example.com").await;
    let csrf = olga.csrf().await;

    let (r, page) = olga
        .post(
            "/ui/policies/validate",
            &[
                ("csrf", &csrf),
                ("file", "mine.cedar"),
                (
                    "text",
                    "@id(\"ok\")\npermit (principal, action, resource)\nwhen { 1 + };",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains("role=\"alert\"") && page.contains("Not valid"),
        "{page}"
    );
    assert!(
        page.contains("<td><code>mine.cedar</code></td><td>3</td>"),
        "located: {page}"
    );
    assert!(
        page.contains("when { 1 + };"),
        "the candidate is kept in the form"
    );

    let (r, page) = olga
        .post(
            "/ui/policies/validate",
            &[
                ("csrf", &csrf),
                (
                    "text",
                    "@id(\"open\") permit (principal, action, resource);",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(page.contains("Valid: 1 operator policies"), "{page}");
    let running =
        a.w.api
            .get("/v1/policies", &a.w.api.admin)
            .await
            .ok(200)
            .clone();
    assert_eq!(
        running["operator_policies"], 0,
        "validating installs nothing"
    );

    // Install a set through the API, then ask the console about a request.
    a.w.api
        .send(
            axum::http::Method::PUT,
            "/v1/policies",
            Some(&a.w.api.admin),
            Some(&json!({
                "policies": [{ "name": "docs.cedar", "text": "@id(\"all-read\") @reason(\"everyone reads docs\") permit (principal, action == Action::\"read\", resource);" }],
                "schemas": [{ "name": "docs.cedarschema", "text": "entity User; entity Doc; action read appliesTo { principal: [User], resource: [Doc] };" }],
            })),
        )
        .await
        .ok(200);
    // A candidate is checked against the running set's schema fragments, or a pasted one.
    let uses_docs =
        "@id(\"docs-only\") permit (principal, action == Action::\"read\", resource is Doc);";
    let (r, page) = olga
        .post(
            "/ui/policies/validate",
            &[("csrf", &csrf), ("text", uses_docs)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(page.contains("Valid: 1 operator policies"), "{page}");
    let (r, page) = olga
        .post(
            "/ui/policies/validate",
            &[
                ("csrf", &csrf),
                ("text", uses_docs),
                (
                    "schema",
                    "entity Page; action view appliesTo { principal: [Page], resource: [Page] };",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains("<code>docs-only</code>"),
        "the policy is named: {page}"
    );
    let (_, page) = olga.get("/ui/policies").await;
    assert!(
        page.contains("all-read") && page.contains("docs.cedar") && page.contains("entity Doc;"),
        "{page}"
    );
    fn request<'a>(action: &'a str, context: &'a str, csrf: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("csrf", csrf),
            ("subject_type", "User"),
            ("subject_id", "alice"),
            ("action", action),
            ("resource_type", "Doc"),
            ("resource_id", "d1"),
            ("context", context),
        ]
    }
    let fields = request("read", "", &csrf);
    let (r, page) = olga.post("/ui/policies/test", &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(page.contains("Decision: <strong>allow</strong>"), "{page}");
    assert!(
        page.contains("<code>all-read</code>"),
        "the determining policy: {page}"
    );

    let fields = request("write", "{\"ip\": \"10.0.0.1\"}", &csrf);
    let (r, page) = olga.post("/ui/policies/test", &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(page.contains("Decision: <strong>deny</strong>"), "{page}");

    let fields = request("read", "{not json", &csrf);
    let (r, page) = olga.post("/ui/policies/test", &fields).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains("role=\"alert\"") && page.contains("not a JSON object"),
        "{page}"
    );

    let (r, page) = olga
        .post(
            "/ui/policies/test",
            &[("csrf", &csrf), ("subject_type", "User")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("The subject id is required"), "{page}");
    let long = "a".repeat(2000);
    let fields: Vec<(&str, &str)> = request("read", "", &csrf)
        .into_iter()
        .map(|(k, v)| {
            if k == "subject_id" {
                (k, long.as_str())
            } else {
                (k, v)
            }
        })
        .collect();
    let (r, page) = olga.post("/ui/policies/test", &fields).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("longer than 1024 characters"), "{page}");
    let (r, _) = olga
        .post("/ui/policies/test", &request("read", "", "forged"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (r, _) = olga
        .post(
            "/ui/policies/validate",
            &[("csrf", "forged"), ("text", "x")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn audit_search_filters_pages_and_verify_reports_the_chain() {
    let a = Admin::new().await;
    let first = a.w.active().await;
    let second = a.w.requested().await;
    let mut olga = a.browser("olga@example.com").await;

    let row = |kind: &str| format!("<td><code>{kind}</code></td>");
    let (r, page) = olga.get("/ui/audit?type=consent.granted").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(page.matches(&row("consent.granted")).count(), 2, "{page}");
    assert!(!page.contains(&row("mandate.requested")));
    assert!(page.contains(&format!("/ui/mandates/{first}")));
    assert!(page.contains("channel=api"), "key fields: {page}");

    let (_, page) = olga.get(&format!("/ui/audit?mandate={second}")).await;
    assert!(page.contains(&row("mandate.requested")));
    assert!(!page.contains(&format!("/ui/mandates/{first}")), "{page}");

    let (_, page) = olga.get("/ui/audit?since=2030-01-01T00:00").await;
    assert!(page.contains("No events match"));
    let (_, page) = olga
        .get("/ui/audit?until=2026-11-23T10:00&type=mandate.requested")
        .await;
    assert_eq!(page.matches(&row("mandate.requested")).count(), 2, "{page}");

    let (r, page) = olga
        .get("/ui/audit?type=token.stolen&mandate=nope&since=yesterday")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("role=\"alert\"") && page.contains("not an audit event type"),
        "{page}"
    );

    // Paging: 50 to a page, the next link carries the filter on.
    for _ in 0..50 {
        a.w.requested().await;
    }
    let (_, page) = olga.get("/ui/audit?type=mandate.requested").await;
    assert_eq!(page.matches(&row("mandate.requested")).count(), 50);
    let next = page
        .split("href=\"")
        .find(|s| s.starts_with("/ui/audit?type=mandate.requested&amp;after="))
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let (_, page) = olga.get(&next).await;
    assert_eq!(page.matches(&row("mandate.requested")).count(), 2, "{page}");

    // A call recorded with its (partly redacted) arguments: the row names the tool and
    // the outcome, never the arguments.
    let store = a.w.api.service.store().clone();
    let tenant = store.tenant_by_name("default").await.unwrap().unwrap().id;
    let call = mandate_audit::NewEvent::new(
        tenant,
        mandate_audit::EventKind::ToolCalled,
        format!("agent:{}", a.w.agent),
    )
    .with("tool", "bank.transfer")
    .with("outcome", "ok")
    .with(
        "arguments",
        json!({"iban": "DE89370400440532013000", "pin": "[redacted]"}),
    );
    store.append_events(&[call], start_time()).await.unwrap();
    let (_, page) = olga.get("/ui/audit?type=tool.called").await;
    assert!(
        page.contains("tool=bank.transfer") && page.contains("outcome=ok"),
        "{page}"
    );
    assert!(
        !page.contains("DE89370400440532013000") && !page.contains("iban"),
        "{page}"
    );

    let csrf = olga.csrf().await;
    let (r, _) = olga.post("/ui/audit/verify", &[("csrf", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (r, page) = olga.post("/ui/audit/verify", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(page.contains("Verified: the chain is intact"), "{page}");
}

#[tokio::test]
async fn another_tenants_agents_and_tools_are_not_there() {
    let a = Admin::new().await;
    let store = a.w.api.service.store().clone();
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
    let svc = &a.w.api.service;
    let dora = svc
        .create_human(
            &admin_b,
            serde_json::from_value(json!({"display_name": "Dora", "email": "dora@other.example"}))
                .unwrap(),
        )
        .await
        .unwrap();
    let bot = svc
        .create_agent(
            &admin_b,
            serde_json::from_value(json!({"name": "other-tenant-bot", "owner": dora.id})).unwrap(),
        )
        .await
        .unwrap();
    let server = svc
        .create_tool_server(
            &admin_b,
            serde_json::from_value(json!({"name": "vault", "transport": {"kind": "http", "base_url": "https://vault.other.example"}})).unwrap(),
        )
        .await
        .unwrap();
    let tool = svc
        .create_tool(
            &admin_b,
            serde_json::from_value(json!({"server_id": server.id, "name": "theirs"})).unwrap(),
        )
        .await
        .unwrap();
    let theirs = svc
        .request_mandate(
            &admin_b,
            serde_json::from_value(json!({
                "agent_id": bot.id, "human_id": dora.id, "intent": "Secret plans of the other tenant",
                "scope": {"tools": [{"tool": "vault.theirs"}]}, "data_ceiling": "public", "mode": "execute",
                "expires_at": (start_time() + Duration::hours(1)).to_rfc3339(),
            }))
            .unwrap(),
        )
        .await
        .unwrap()
        .mandate
        .id;

    let theirs_text = theirs.to_string();
    let mut olga = a.browser("olga@example.com").await;
    for path in [
        format!("/ui/agents/{}", bot.id),
        format!("/ui/tools/{}", tool.id),
        format!("/ui/mandates/{theirs}"),
    ] {
        let (r, page) = olga.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !page.contains("other-tenant") && !page.contains("theirs"),
            "{page}"
        );
    }
    let csrf = olga.csrf().await;
    let (r, _) = olga
        .post(
            &format!("/ui/tools/{}", tool.id),
            &[
                ("csrf", &csrf),
                ("risk_tier", "read"),
                ("data_class", "public"),
                ("tags", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let (r, _) = olga
        .post(
            &format!("/ui/agents/{}/status", bot.id),
            &[("csrf", &csrf), ("status", "disabled")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        svc.tool(&admin_b, tool.id).await.unwrap().risk_tier,
        tool.risk_tier
    );
    assert_eq!(
        svc.agent(&admin_b, bot.id).await.unwrap().status,
        bot.status
    );
    for path in ["/ui/agents", "/ui/tools", "/ui/audit"] {
        let (_, page) = olga.get(path).await;
        for other in [
            "other-tenant-bot",
            "vault",
            "Secret plans",
            theirs_text.as_str(),
        ] {
            assert!(!page.contains(other), "{other} on {path}");
        }
    }
}

#[tokio::test]
async fn the_mandate_page_draws_who_delegated_to_whom() {
    let s = Setup::new().await;
    with_password_of(&s).await;
    let mandate = s.mandate().await;
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com", PASSWORD).await;
    let (_, page) = alice.get(&format!("/ui/mandates/{mandate}")).await;
    assert!(!page.contains("<svg"), "no token yet");
    assert!(page.contains("No token has been issued"));

    let issued = s.issue(&mandate, "tree-1", None).await;
    let token = issued.ok(200)["access_token"].as_str().unwrap().to_owned();
    let (_, page) = alice.get(&format!("/ui/mandates/{mandate}")).await;
    assert!(page.contains("<svg class=\"tree\" role=\"img\""), "{page}");
    assert!(page.contains(">planner</text>"), "{page}");

    let delegated = s
        .exchange(1, &token, Some("flights.search"), "tree-2")
        .await;
    let delegated = delegated.ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, page) = alice.get(&format!("/ui/mandates/{mandate}")).await;
    let svg = &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap()];
    assert!(
        svg.contains(">planner</text>") && svg.contains(">booker</text>"),
        "{svg}"
    );
    assert!(svg.contains("planner delegated to booker"), "{svg}");
    assert!(svg.contains("<title>Delegation tree of this mandate</title>"));
    assert_eq!(svg.matches("<line ").count(), 1, "one edge: {svg}");
    assert!(!svg.contains(&token[..20]), "no token in the picture");
    // Each hop's scope; none ended yet.
    assert!(svg.contains(">flights.search</text>"), "{svg}");
    assert!(!svg.contains("stroke-dasharray"), "{svg}");

    // The delegated token revoked: that branch is marked, the root is not.
    s.api
        .raw(
            axum::http::Request::builder()
                .method(axum::http::Method::POST)
                .uri("/oauth2/revoke")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("Bearer {}", s.api.admin))
                .body(axum::body::Body::from(format!("token={delegated}")))
                .unwrap(),
        )
        .await
        .ok(200);
    let (_, page) = alice.get(&format!("/ui/mandates/{mandate}")).await;
    let svg = &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap()];
    assert!(svg.contains("booker (revoked)"), "{svg}");
    assert!(svg.contains(">planner</text>"), "{svg}");
    assert_eq!(svg.matches("stroke-dasharray").count(), 1, "{svg}");
}

async fn with_password_of(s: &Setup) {
    s.api
        .send(
            axum::http::Method::PUT,
            &format!("/v1/humans/{}/password", s.alice),
            Some(&s.api.admin),
            Some(&json!({"password": PASSWORD})),
        )
        .await
        .ok(204);
}

#[tokio::test]
async fn a_candidate_is_replayed_against_recorded_decisions() {
    let a = Admin::new().await;
    let flights = a
        .w
        .api
        .post(
            "/v1/tool-servers",
            &a.w.api.admin,
            &json!({"name": "flights", "transport": {"kind": "mcp_http", "url": "https://flights.example/mcp"}}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.w.api
        .post(
            "/v1/tools",
            &a.w.api.admin,
            &json!({"server_id": flights, "name": "search", "description": "Find flights"}),
        )
        .await
        .ok(201);
    let mandate = a.w.active().await;
    // What the gateway recorded: an allowed search, and a listing (never replayed).
    let store = a.w.api.service.store().clone();
    let tenant = store.tenant_by_name("default").await.unwrap().unwrap().id;
    let decision = |data: Value| {
        let mut e = mandate_audit::NewEvent::new(
            tenant,
            mandate_audit::EventKind::Decision,
            format!("agent:{}", a.w.agent),
        )
        .mandate(mandate.parse().unwrap())
        .agent(a.w.agent.parse().unwrap());
        if let Value::Object(map) = data {
            e.data = map;
        }
        e
    };
    store
        .append_events(
            &[
                decision(json!({"action": "call_tool", "tool": "flights.search", "allowed": true, "policies": []})),
                decision(json!({"action": "list_tools", "allowed": true})),
            ],
            start_time() + Duration::minutes(1),
        )
        .await
        .unwrap();

    let mut olga = a.browser("olga@example.com").await;
    let csrf = olga.csrf().await;
    let since = (start_time() - Duration::hours(1)).to_rfc3339();
    let (r, page) = olga.get("/ui/policies").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(page.contains("action=\"/ui/policies/replay\""), "{page}");
    labelled(&page, "/ui/policies");

    // A candidate that forbids searching: the recorded allow would become a deny.
    let forbid = "@id(\"no-search\")\nforbid (principal, action == Mandate::Action::\"call_tool\", resource == Mandate::Tool::\"flights.search\");";
    let (r, page) = olga
        .post(
            "/ui/policies/replay",
            &[("csrf", &csrf), ("candidate", forbid), ("since", &since)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(page.contains("Replayed 1 decisions"), "{page}");
    assert!(page.contains("1 would change"), "{page}");
    assert!(page.contains("1 list_tools summaries"), "{page}");
    assert!(
        page.contains(&format!("href=\"/ui/mandates/{mandate}\"")),
        "{page}"
    );
    assert!(page.contains("allow → <strong>deny</strong>"), "{page}");
    assert!(page.contains("<code>no-search</code>"), "{page}");
    assert!(page.contains("Nothing was installed"), "{page}");
    let (_, running) = olga.get("/ui/policies").await;
    assert!(!running.contains("no-search"), "never installed");

    // Since after the call: nothing to replay.
    let later = (start_time() + Duration::hours(2)).to_rfc3339();
    let (_, page) = olga
        .post(
            "/ui/policies/replay",
            &[("csrf", &csrf), ("candidate", forbid), ("since", &later)],
        )
        .await;
    assert!(page.contains("Replayed 0 decisions"), "{page}");

    // Bad input is shown beside the form.
    let (r, page) = olga
        .post(
            "/ui/policies/replay",
            &[
                ("csrf", &csrf),
                ("candidate", forbid),
                ("since", "yesterday"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("not an RFC 3339 time"), "{page}");
    let (r, page) = olga
        .post(
            "/ui/policies/replay",
            &[
                ("csrf", &csrf),
                ("candidate", "forbid (principal"),
                ("since", &since),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("Not valid"), "{page}");
    let (r, _) = olga
        .post(
            "/ui/policies/replay",
            &[("csrf", "forged"), ("candidate", forbid), ("since", &since)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Not an admin: nothing here.
    let mut alice = a.browser("alice@example.com").await;
    let csrf = alice.csrf().await;
    let (r, page) = alice
        .post(
            "/ui/policies/replay",
            &[("csrf", &csrf), ("candidate", forbid), ("since", &since)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{page}");
}
