//! `/v1/policies` and the AuthZEN endpoints: who may use them, bad sets refused with
//! located problems, large bodies within their own limits, discovery.

use serde_json::json;

use crate::support::World;

fn request() -> serde_json::Value {
    json!({
        "subject": { "type": "User", "id": "alice" },
        "action": { "name": "read" },
        "resource": { "type": "Doc", "id": "d1" },
    })
}

fn set(policy: &str) -> serde_json::Value {
    json!({
        "policies": [{ "name": "docs.cedar", "text": policy }],
        "schemas": [{ "name": "docs.cedarschema", "text": "entity User; entity Doc; action read appliesTo { principal: [User], resource: [Doc] };" }],
    })
}

#[tokio::test]
async fn only_admins_manage_policies_or_ask_the_pdp() {
    let w = World::new().await;
    for token in [&w.agent_token, &w.alice_token] {
        w.api
            .get("/v1/policies", token)
            .await
            .problem(403, "forbidden");
        w.api
            .send(
                axum::http::Method::PUT,
                "/v1/policies",
                Some(token),
                Some(&set("permit (principal, action, resource);")),
            )
            .await
            .problem(403, "forbidden");
        w.api
            .post("/access/v1/evaluation", token, &request())
            .await
            .problem(403, "forbidden");
    }
    w.api
        .post("/access/v1/evaluation", "mdt_nonsense", &request())
        .await
        .problem(401, "unauthenticated");
}

#[tokio::test]
async fn a_set_is_replaced_whole_or_refused_with_located_problems() {
    let w = World::new().await;
    let before = w
        .api
        .get("/v1/policies", &w.api.admin)
        .await
        .ok(200)
        .clone();
    assert_eq!(before["operator_policies"], 0);
    assert!(
        before["policies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["builtin"] == true)
    );

    let denied = w
        .api
        .post("/access/v1/evaluation", &w.api.admin, &request())
        .await;
    assert_eq!(denied.ok(200)["decision"], false);

    let bad = set("permit (principal, action, resource)\nwhen { resource.missing == 1 };");
    let problem = w
        .api
        .post("/v1/policies/validate", &w.api.admin, &bad)
        .await;
    problem.problem(422, "invalid-policy-set");
    assert_eq!(
        problem.body["problems"][0]["file"], "docs.cedar",
        "{}",
        problem.body
    );
    assert_eq!(problem.body["problems"][0]["line"], 2, "{}", problem.body);
    w.api
        .send(
            axum::http::Method::PUT,
            "/v1/policies",
            Some(&w.api.admin),
            Some(&bad),
        )
        .await
        .problem(422, "invalid-policy-set");
    let unchanged = w
        .api
        .get("/v1/policies", &w.api.admin)
        .await
        .ok(200)
        .clone();
    assert_eq!(unchanged["digest"], before["digest"]);

    let good = set("@id(\"all-read\") permit (principal, action == Action::\"read\", resource);");
    let summary = w
        .api
        .send(
            axum::http::Method::PUT,
            "/v1/policies",
            Some(&w.api.admin),
            Some(&good),
        )
        .await;
    assert_eq!(summary.ok(200)["operator_policies"], 1);
    let allowed = w
        .api
        .post("/access/v1/evaluation", &w.api.admin, &request())
        .await;
    assert_eq!(allowed.ok(200)["decision"], true);
    assert_eq!(allowed.body["context"]["policies"], json!(["all-read"]));

    // Unknown fields in the set are refused, not ignored.
    let mut odd = good.clone();
    odd["extra"] = json!(1);
    w.api
        .send(
            axum::http::Method::PUT,
            "/v1/policies",
            Some(&w.api.admin),
            Some(&odd),
        )
        .await
        .problem(422, "invalid-request");
}

#[tokio::test]
async fn batches_beyond_the_admin_body_limit_are_accepted_up_to_their_own() {
    let w = World::new().await;
    let items: Vec<_> = (0..1_000)
        .map(|i| json!({ "resource": { "type": "Doc", "id": format!("document-with-a-long-identifier-{i:06}") } }))
        .collect();
    let mut batch = request();
    batch["evaluations"] = json!(items);
    assert!(batch.to_string().len() > 64 * 1024);
    let reply = w
        .api
        .post("/access/v1/evaluations", &w.api.admin, &batch)
        .await;
    assert_eq!(
        reply.ok(200)["evaluations"].as_array().unwrap().len(),
        1_000
    );
    let mut too_many = batch.clone();
    too_many["evaluations"]
        .as_array_mut()
        .unwrap()
        .push(json!({}));
    w.api
        .post("/access/v1/evaluations", &w.api.admin, &too_many)
        .await
        .problem(400, "bad-request");
}

#[tokio::test]
async fn discovery_names_every_endpoint() {
    let w = World::new().await;
    let doc = w.api.get("/.well-known/authzen-configuration", "").await;
    let doc = doc.ok(200);
    assert_eq!(doc["policy_decision_point"], "http://127.0.0.1:8731");
    for (key, path) in [
        ("access_evaluation_endpoint", "/access/v1/evaluation"),
        ("access_evaluations_endpoint", "/access/v1/evaluations"),
        ("search_subject_endpoint", "/access/v1/search/subject"),
        ("search_resource_endpoint", "/access/v1/search/resource"),
        ("search_action_endpoint", "/access/v1/search/action"),
    ] {
        assert_eq!(doc[key], format!("http://127.0.0.1:8731{path}"));
    }
}
