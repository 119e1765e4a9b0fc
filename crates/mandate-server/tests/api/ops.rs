// Health, readiness, metrics and the generated OpenAPI document.

use crate::support::Api;
use axum::http::{Method, header};
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness() {
    let api = Api::new().await;
    assert_eq!(
        api.send(Method::GET, "/healthz", None, None).await.ok(200)["status"],
        "ok"
    );
    let ready = api.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.ok(200)["status"], "ready");
    assert_eq!(ready.body["store"], "sqlite");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_not_by_id() {
    let api = Api::new().await;
    api.get(
        "/v1/mandates/mnd_01a2084501a2084501a2084501a20845",
        &api.admin,
    )
    .await;
    api.get(
        "/v1/mandates/mnd_01a2084501a2084501a2084501a20846",
        &api.admin,
    )
    .await;
    let reply = api.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = reply.body.as_str().unwrap();
    assert!(
        text.contains(
            r#"mandate_http_requests_total{method="GET",route="/v1/mandates/{id}",status="404"} 2"#
        ),
        "{text}"
    );
    assert!(!text.contains("mnd_01a2084501a2084501a2084501a20845"));
    assert!(text.contains("mandate_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let api = Api::new().await;
    let doc = api
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .ok(200)
        .clone();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/healthz", &["get"][..]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/v1/humans", &["get", "post"]),
        ("/v1/humans/{id}", &["get"]),
        ("/v1/humans/{id}/tokens", &["post"]),
        ("/v1/agents", &["get", "post"]),
        ("/v1/agents/{id}", &["get", "patch"]),
        ("/v1/agents/{id}/tokens", &["post"]),
        ("/v1/tool-servers", &["get", "post"]),
        ("/v1/tool-servers/{id}", &["get", "patch"]),
        ("/v1/tools", &["get", "post"]),
        ("/v1/tools/{id}", &["get", "patch"]),
        ("/v1/mandates", &["get", "post"]),
        ("/v1/mandates/{id}", &["get"]),
        ("/v1/mandates/{id}/consent", &["post"]),
        ("/v1/mandates/{id}/complete", &["post"]),
        ("/v1/mandates/{id}/revoke", &["post"]),
        ("/v1/mandates/{id}/rollback", &["post"]),
        ("/v1/audit", &["get"]),
        ("/v1/audit/verify", &["get"]),
    ] {
        let entry = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for m in methods {
            assert!(entry.get(*m).is_some(), "{m} {path} is not documented");
        }
    }
    // Every parameter is where the request carries it: a path parameter names a
    // `{segment}` of its path, and every one of the path's segments is declared; the
    // listings' paging and filters are query parameters.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let declared: Vec<&Value> = operation["parameters"]
                .as_array()
                .map(|p| p.iter().collect())
                .unwrap_or_default();
            for p in &declared {
                let (name, place) = (p["name"].as_str().unwrap(), p["in"].as_str().unwrap());
                assert!(
                    ["path", "query", "header"].contains(&place),
                    "{method} {path}: {p}"
                );
                assert_eq!(
                    place == "path",
                    path.contains(&format!("{{{name}}}")),
                    "{method} {path}: `{name}` is declared in {place}"
                );
            }
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                assert!(
                    declared
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{method} {path}: `{name}` is not declared"
                );
            }
        }
    }
    for (path, name) in [
        ("/v1/mandates", "after"),
        ("/v1/agents", "limit"),
        ("/v1/approvals", "status"),
    ] {
        let params = paths[path]["get"]["parameters"].as_array().unwrap();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == name && p["in"] == "query"),
            "{path}: {params:?}"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "MandateTerms",
        "MandateView",
        "Problem",
        "Agent",
        "Human",
        "Tool",
        "ToolServer",
        "ConsentRequest",
        "Event",
        "Verification",
        "RollbackReport",
        "Compensation",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    // Event kinds by the names events carry (the derive listed the Rust variants').
    let kinds = schemas["EventKind"]["enum"].as_array().unwrap();
    assert!(kinds.contains(&Value::from("policy.changed")), "{kinds:?}");
    assert!(!kinds.contains(&Value::from("PolicyChanged")), "{kinds:?}");
    // The step-up setting of tool servers.
    for schema in ["ToolServer", "NewToolServer", "ToolServerUpdate"] {
        let kind = schemas[schema]["properties"]["step_up"]["type"].to_string();
        assert!(kind.contains("boolean"), "{schema}: {}", schemas[schema]);
    }
    // The served document is the one generated from the code.
    assert_eq!(
        doc,
        serde_json::to_value(mandate_server::openapi()).unwrap()
    );
}
