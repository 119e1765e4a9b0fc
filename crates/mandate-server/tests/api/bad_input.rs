// Hostile and careless input: every kind is refused with a problem+json of the right
// status and type, never a 500, and never changes state.

use crate::support::{Api, World, start_time};
use axum::body::Body;
use axum::http::{Method, Request, header};
use chrono::Duration;
use mandate_domain::Tenant;
use mandate_types::TenantId;
use serde_json::{Value, json};

/// Everything the admin can list, to prove a refused request changed nothing.
async fn snapshot(api: &Api) -> Value {
    let mut all = serde_json::Map::new();
    for path in [
        "/v1/humans",
        "/v1/agents",
        "/v1/mandates",
        "/v1/tool-servers",
        "/v1/tools",
    ] {
        all.insert(
            path.to_owned(),
            api.get(&format!("{path}?limit=500"), &api.admin)
                .await
                .ok(200)
                .clone(),
        );
    }
    Value::Object(all)
}

fn raw(
    method: Method,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(ct) = content_type {
        r = r.header(header::CONTENT_TYPE, ct);
    }
    r.body(body.into()).unwrap()
}

#[tokio::test]
async fn malformed_bodies() {
    let w = World::new().await;
    let api = &w.api;
    let id = w.requested().await;
    let before = snapshot(api).await;
    let json = Some("application/json");
    // (method, path, content type, body, expected status, expected problem type)
    type Case<'a> = (Method, String, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/humans".into(),
            json,
            b"{".to_vec(),
            400,
            "malformed-json",
        ),
        (
            Method::POST,
            "/v1/humans".into(),
            json,
            b"".to_vec(),
            400,
            "malformed-json",
        ),
        (
            Method::POST,
            "/v1/humans".into(),
            json,
            b"{\"display_name\": \"x\",}".to_vec(),
            400,
            "malformed-json",
        ),
        (
            Method::POST,
            "/v1/humans".into(),
            json,
            vec![0xff, 0xfe, b'{', b'}'],
            400,
            "malformed-json",
        ),
        (
            Method::POST,
            "/v1/mandates".into(),
            json,
            b"[1,2,3]".to_vec(),
            422,
            "invalid-request",
        ),
        (
            Method::POST,
            "/v1/mandates".into(),
            json,
            b"{\"agent_id\": 7}".to_vec(),
            422,
            "invalid-request",
        ),
        (
            Method::POST,
            format!("/v1/mandates/{id}/consent"),
            json,
            b"{\"decision\": \"maybe\"}".to_vec(),
            422,
            "invalid-request",
        ),
        (
            Method::POST,
            format!("/v1/mandates/{id}/consent"),
            json,
            b"{\"decision\": true}".to_vec(),
            422,
            "invalid-request",
        ),
        (
            Method::POST,
            "/v1/humans".into(),
            None,
            b"{}".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            Method::POST,
            "/v1/humans".into(),
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            Method::POST,
            "/v1/humans".into(),
            Some("application/x-www-form-urlencoded"),
            b"a=b".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            Method::POST,
            "/v1/agents".into(),
            json,
            vec![b' '; 70 * 1024],
            413,
            "payload-too-large",
        ),
        (
            Method::POST,
            "/v1/mandates".into(),
            json,
            format!("{{\"intent\": \"{}\"}}", "x".repeat(100 * 1024)).into_bytes(),
            413,
            "payload-too-large",
        ),
    ];
    for (method, path, ct, body, status, slug) in cases {
        let reply = api
            .raw(raw(method.clone(), &path, &api.admin, ct, body))
            .await;
        let detail = reply.problem(status, slug);
        if status == 413 {
            assert!(detail.contains("64 KiB"), "{detail}");
        }
    }
    // A policy set may be larger (16 MiB); beyond it, the refusal says so.
    let reply = api
        .raw(raw(
            Method::PUT,
            "/v1/policies",
            &api.admin,
            json,
            vec![b' '; 17 * 1024 * 1024],
        ))
        .await;
    let detail = reply.problem(413, "payload-too-large");
    assert!(detail.contains("policy sets 16 MiB"), "{detail}");
    // Deeply nested JSON is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    api.raw(raw(Method::POST, "/v1/mandates", &api.admin, json, deep))
        .await
        .problem(400, "malformed-json");
    assert_eq!(before, snapshot(api).await);
}

#[tokio::test]
async fn unknown_fields_and_wrong_types_name_the_field() {
    let w = World::new().await;
    let api = &w.api;
    let before = snapshot(api).await;
    let mut terms = w.terms();
    terms["scope"]["tools"][0]["constrains"] = json!({});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/humans",
            json!({"display_name": "Eve", "email": "eve@example.com", "is_admin": true}),
            "is_admin",
        ),
        (
            "/v1/humans",
            json!({"display_name": 5, "email": "eve@example.com"}),
            "display_name",
        ),
        (
            "/v1/agents",
            json!({"name": "x", "owner": w.alice, "role": "admin"}),
            "role",
        ),
        (
            "/v1/agents",
            json!({"name": "x", "owner": "hum_nope"}),
            "owner",
        ),
        ("/v1/mandates", terms, "constrains"),
        (
            "/v1/mandates",
            {
                let mut t = w.terms();
                t["mode"] = json!("yolo");
                t
            },
            "mode",
        ),
        (
            "/v1/mandates",
            {
                let mut t = w.terms();
                t["data_ceiling"] = json!("top-secret");
                t
            },
            "data_ceiling",
        ),
        (
            "/v1/mandates",
            {
                let mut t = w.terms();
                t["expires_at"] = json!("tomorrow");
                t
            },
            "expires_at",
        ),
        (
            "/v1/mandates",
            {
                let mut t = w.terms();
                t["budgets"]["max_calls"] = json!(-1);
                t
            },
            "max_calls",
        ),
        (
            "/v1/mandates",
            {
                let mut t = w.terms();
                t.as_object_mut().unwrap().remove("intent");
                t
            },
            "intent",
        ),
        (
            "/v1/mandates",
            {
                let mut t = w.terms();
                t["status"] = json!("active");
                t
            },
            "status",
        ),
    ];
    for (path, body, field) in cases {
        let detail = api
            .post(path, &api.admin, &body)
            .await
            .problem(422, "invalid-request");
        assert!(
            detail.contains(field),
            "{path}: `{detail}` does not name `{field}`"
        );
    }
    assert_eq!(before, snapshot(api).await);
}

#[tokio::test]
async fn invalid_terms_are_refused_with_the_reason() {
    let w = World::new().await;
    let api = &w.api;
    let before = snapshot(api).await;
    let past = (start_time() - Duration::minutes(1)).to_rfc3339();
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut t = w.terms();
                t["expires_at"] = json!(past);
                t
            },
            "expires_at",
        ),
        (
            {
                let mut t = w.terms();
                t["scope"]["tools"] = json!([]);
                t
            },
            "scope.tools",
        ),
        (
            {
                let mut t = w.terms();
                t["scope"]["tools"][0]["tool"] = json!("rm -rf /");
                t
            },
            "scope.tools[0].tool",
        ),
        (
            {
                let mut t = w.terms();
                t["intent"] = json!("   ");
                t
            },
            "intent",
        ),
        (
            {
                let mut t = w.terms();
                t["owners"] = json!(["hum_01a2084501a2084501a2084501a20845"]);
                t
            },
            "owners",
        ),
        (
            {
                let mut t = w.terms();
                t["human_id"] = json!("hum_01a2084501a2084501a2084501a20845");
                t
            },
            "human_id",
        ),
        (
            {
                let mut t = w.terms();
                t["agent_id"] = json!("agt_01a2084501a2084501a2084501a20845");
                t
            },
            "agent_id",
        ),
    ];
    for (terms, field) in cases {
        let detail = api
            .post("/v1/mandates", &api.admin, &terms)
            .await
            .problem(422, "invalid-request");
        assert!(detail.contains(field), "`{detail}` does not name `{field}`");
    }
    // A disabled agent cannot be granted a mandate, nor use its token.
    api.patch(
        &format!("/v1/agents/{}", w.agent),
        &api.admin,
        &json!({"status": "disabled"}),
    )
    .await
    .ok(200);
    let detail = api
        .post("/v1/mandates", &api.admin, &w.terms())
        .await
        .problem(422, "invalid-request");
    assert!(detail.contains("disabled"), "{detail}");
    api.get("/v1/mandates", &w.agent_token)
        .await
        .problem(403, "forbidden");
    api.patch(
        &format!("/v1/agents/{}", w.agent),
        &api.admin,
        &json!({"status": "active"}),
    )
    .await
    .ok(200);
    assert_eq!(before, snapshot(api).await);
}

#[tokio::test]
async fn ids_that_are_malformed_unknown_or_another_tenants_are_not_found() {
    let w = World::new().await;
    let api = &w.api;
    let id = w.requested().await;

    // A second tenant with its own admin, human and mandate.
    let other = Tenant {
        id: TenantId::generate(),
        name: "other".into(),
        created_at: start_time(),
    };
    api.service.store().create_tenant(&other).await.unwrap();
    let other_admin = api
        .service
        .issue_admin_token(other.id, "other admin")
        .await
        .unwrap();
    let other_admin = other_admin.secret.expose().clone();
    let their_human = api
        .post(
            "/v1/humans",
            &other_admin,
            &json!({"display_name": "Zed", "email": "zed@example.com"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = snapshot(api).await;

    let unknown = "mnd_01a2084501a2084501a2084501a20845";
    for path in [
        format!("/v1/mandates/{unknown}"),
        "/v1/mandates/mnd_nope".to_owned(),
        format!("/v1/mandates/{}", w.alice), // a human id where a mandate id belongs
        "/v1/mandates/%00".to_owned(),
        format!("/v1/humans/{their_human}"),
        format!("/v1/agents/{}", w.alice),
        "/v1/tools/tool_x".to_owned(),
        "/v1/tool-servers/..".to_owned(),
    ] {
        api.get(&path, &api.admin).await.problem(404, "not-found");
    }
    // The other tenant's admin cannot see or touch this tenant's mandate or people.
    api.get(&format!("/v1/mandates/{id}"), &other_admin)
        .await
        .problem(404, "not-found");
    api.post(
        &format!("/v1/mandates/{id}/revoke"),
        &other_admin,
        &json!({}),
    )
    .await
    .problem(404, "not-found");
    api.get(&format!("/v1/humans/{}", w.alice), &other_admin)
        .await
        .problem(404, "not-found");
    api.post(
        &format!("/v1/humans/{}/tokens", w.alice),
        &other_admin,
        &json!({"label": "steal"}),
    )
    .await
    .problem(404, "not-found");
    assert_eq!(
        api.get("/v1/mandates", &other_admin).await.ok(200)["items"],
        json!([])
    );
    // Nor name this tenant's people in its own requests.
    let detail = api
        .post(
            "/v1/agents",
            &other_admin,
            &json!({"name": "spy", "owner": w.alice}),
        )
        .await
        .problem(422, "invalid-request");
    assert!(detail.contains("owner"), "{detail}");
    assert_eq!(before, snapshot(api).await);
}

#[tokio::test]
async fn bad_credentials_are_unauthenticated_and_roles_are_enforced() {
    let w = World::new().await;
    let api = &w.api;
    let before = snapshot(api).await;
    for auth in [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer ".to_owned()),
        Some("Basic YWRtaW46YWRtaW4=".to_owned()),
        Some("Bearer mdt_not-a-real-token".to_owned()),
        Some(format!("Bearer {}x", api.admin)),
        Some(format!("Bearer {}", "mdt_".to_owned() + &"A".repeat(5_000))),
        Some("Bearer mdt_' OR 1=1 --".to_owned()),
    ] {
        let mut r = Request::builder().uri("/v1/humans");
        if let Some(auth) = auth {
            r = r.header(header::AUTHORIZATION, auth);
        }
        let reply = api.raw(r.body(Body::empty()).unwrap()).await;
        reply.problem(401, "unauthenticated");
        assert_eq!(
            reply.headers.get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
    }
    // Only an admin manages the directory and the catalog.
    for token in [&w.agent_token, &w.alice_token] {
        api.post(
            "/v1/humans",
            token,
            &json!({"display_name": "Eve", "email": "eve@example.com"}),
        )
        .await
        .problem(403, "forbidden");
        api.post(
            "/v1/agents",
            token,
            &json!({"name": "evil", "owner": w.alice}),
        )
        .await
        .problem(403, "forbidden");
        api.patch(
            &format!("/v1/agents/{}", w.agent),
            token,
            &json!({"status": "disabled"}),
        )
        .await
        .problem(403, "forbidden");
        api.post(
            &format!("/v1/agents/{}/tokens", w.agent),
            token,
            &json!({"label": "x"}),
        )
        .await
        .problem(403, "forbidden");
        api.post(
            "/v1/tool-servers",
            token,
            &json!({"name": "x", "transport": {"kind": "http", "base_url": "http://127.0.0.1:1"}}),
        )
        .await
        .problem(403, "forbidden");
        api.get("/v1/humans", token).await.problem(403, "forbidden");
    }
    assert_eq!(before, snapshot(api).await);
}

#[tokio::test]
async fn bad_queries_routes_and_methods() {
    let w = World::new().await;
    let api = &w.api;
    for path in [
        "/v1/mandates?status=bogus",
        "/v1/mandates?limit=0",
        "/v1/mandates?limit=501",
        "/v1/mandates?limit=-1",
        "/v1/mandates?limit=ten",
        "/v1/mandates?after=not-a-cursor",
        // Cursors that pass as characters but are no id of the listing's kind (an
        // agent's id is not a mandate cursor).
        "/v1/mandates?after=bogus",
        "/v1/mandates?after=agt_01a2084501a2084501a2084501a20845",
        "/v1/agents?after=bogus",
        "/v1/humans?after=bogus",
        "/v1/tools?after=bogus",
        "/v1/tool-servers?after=bogus",
        "/v1/approvals?after=bogus",
        "/v1/proposals?after=bogus",
        // Beyond the 64-bit signed sequence numbers (found by schemathesis: was a 500).
        "/v1/audit?after=9223372036854775808",
        "/v1/mandates?agent=hum_01a2084501a2084501a2084501a20845",
        "/v1/mandates?colour=blue",
        "/v1/humans?limit=1&limit=2",
    ] {
        api.get(path, &api.admin).await.problem(400, "bad-request");
    }
    api.get("/v1/nothing-here", &api.admin)
        .await
        .problem(404, "not-found");
    api.send(Method::DELETE, "/v1/mandates", Some(&api.admin), None)
        .await
        .problem(405, "method-not-allowed");
    api.send(Method::PUT, "/healthz", None, None)
        .await
        .problem(405, "method-not-allowed");
}

#[tokio::test]
async fn duplicates_conflict() {
    let w = World::new().await;
    let api = &w.api;
    api.post(
        "/v1/humans",
        &api.admin,
        &json!({"display_name": "Alice 2", "email": "alice@example.com"}),
    )
    .await
    .problem(409, "conflict");
    api.post(
        "/v1/agents",
        &api.admin,
        &json!({"name": "travel-bot", "owner": w.bob}),
    )
    .await
    .problem(409, "conflict");
    let server = json!({"name": "flights", "transport": {"kind": "mcp_http", "url": "http://127.0.0.1:9/mcp"}});
    api.post("/v1/tool-servers", &api.admin, &server)
        .await
        .ok(201);
    api.post("/v1/tool-servers", &api.admin, &server)
        .await
        .problem(409, "conflict");
}

#[tokio::test]
async fn pagination_walks_every_item_once() {
    let api = Api::new().await;
    for i in 0..7 {
        api.post(
            "/v1/humans",
            &api.admin,
            &json!({"display_name": format!("P{i}"), "email": format!("p{i}@example.com")}),
        )
        .await
        .ok(201);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/humans?limit=3".to_owned();
    loop {
        let page = api.get(&path, &api.admin).await.ok(200).clone();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|h| h["email"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/humans?limit=3&after={next}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 7);
    assert_eq!(sorted.len(), 7);
    let filtered = api
        .get("/v1/humans?email=p3%40example.com", &api.admin)
        .await;
    assert_eq!(filtered.ok(200)["items"].as_array().unwrap().len(), 1);
}
