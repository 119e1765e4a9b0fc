// The audit log over HTTP: every lifecycle step leaves its event, in order, under the
// mandate's id; who may read what; verification.

use chrono::Duration;
use serde_json::{Value, json};

use crate::support::World;

fn kinds(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_lifecycle_step_is_recorded_under_the_mandate() {
    let w = World::new().await;
    let id = w.active().await;
    w.api
        .post(
            &format!("/v1/mandates/{id}/complete"),
            &w.agent_token,
            &json!({"reason": "booked"}),
        )
        .await
        .ok(200);
    let page = w
        .api
        .get(&format!("/v1/audit?mandate={id}"), &w.api.admin)
        .await
        .ok(200)
        .clone();
    assert_eq!(
        kinds(&page),
        [
            "mandate.requested",
            "consent.granted",
            "consent.granted",
            "mandate.activated",
            "mandate.completed"
        ]
    );
    let events = page["items"].as_array().unwrap();
    assert_eq!(events[0]["actor"], json!([format!("agent:{}", w.agent)]));
    assert_eq!(events[1]["human_id"], w.alice.as_str());
    assert_eq!(events[2]["human_id"], w.bob.as_str());
    assert_eq!(events[4]["data"]["reason"], "booked");
    let hash = w.mandate(&id).await["terms_hash"].clone();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["mandate_id"], id.as_str());
        assert_eq!(e["data"]["terms_hash"], hash);
        assert_eq!(e["schema"], 1);
        if i > 0 {
            assert_eq!(e["prev_hash"], events[i - 1]["hash"]);
        }
    }
    // Nothing secret: no API token appears anywhere in the log.
    let all = w
        .api
        .get("/v1/audit?limit=1000", &w.api.admin)
        .await
        .ok(200)
        .to_string();
    for token in [&w.api.admin, &w.agent_token, &w.alice_token, &w.bob_token] {
        assert!(!all.contains(token.as_str()));
    }

    let verified = w
        .api
        .get("/v1/audit/verify", &w.api.admin)
        .await
        .ok(200)
        .clone();
    assert_eq!(verified["result"], "intact", "{verified}");
    assert_eq!(verified["events"], 5);
}

#[tokio::test]
async fn denial_expiry_and_revocation_are_recorded_too() {
    let w = World::new().await;
    let denied = w.requested().await;
    w.api
        .post(
            &format!("/v1/mandates/{denied}/consent"),
            &w.bob_token,
            &json!({"decision": "denied"}),
        )
        .await
        .ok(200);
    let page = w
        .api
        .get(&format!("/v1/audit?mandate={denied}"), &w.api.admin)
        .await
        .ok(200)
        .clone();
    assert_eq!(
        kinds(&page),
        ["mandate.requested", "consent.denied", "mandate.denied"]
    );

    let revoked = w.active().await;
    w.api
        .post(
            &format!("/v1/mandates/{revoked}/revoke"),
            &w.bob_token,
            &json!({}),
        )
        .await
        .ok(200);
    let page = w
        .api
        .get(
            &format!("/v1/audit?mandate={revoked}&type=mandate.revoked"),
            &w.api.admin,
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(
        page["items"][0]["actor"],
        json!([format!("human:{}", w.bob)])
    );

    let expiring = w.active().await;
    w.api.clock.advance(Duration::hours(2));
    w.api.service.expire_due(100).await.unwrap();
    let page = w
        .api
        .get(
            &format!("/v1/audit?mandate={expiring}&type=mandate.expired"),
            &w.api.admin,
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(page["items"][0]["actor"], json!(["system"]));

    // A refused step leaves no event.
    let before = w
        .api
        .get("/v1/audit?limit=1000", &w.api.admin)
        .await
        .ok(200)["items"]
        .as_array()
        .unwrap()
        .len();
    w.api
        .post(
            &format!("/v1/mandates/{revoked}/complete"),
            &w.agent_token,
            &json!({}),
        )
        .await
        .problem(409, "illegal-transition");
    let after = w
        .api
        .get("/v1/audit?limit=1000", &w.api.admin)
        .await
        .ok(200)["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
}

#[tokio::test]
async fn parties_read_their_mandates_events_only() {
    let w = World::new().await;
    let id = w.active().await;
    for token in [&w.agent_token, &w.alice_token, &w.bob_token] {
        assert_eq!(
            w.api
                .get(&format!("/v1/audit?mandate={id}"), token)
                .await
                .ok(200)["items"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }
    w.api
        .get(&format!("/v1/audit?mandate={id}"), &w.carol_token)
        .await
        .problem(404, "not-found");
    w.api
        .get("/v1/audit", &w.agent_token)
        .await
        .problem(403, "forbidden");
    w.api
        .get("/v1/audit/verify", &w.alice_token)
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn audit_queries_page_and_refuse_bad_filters() {
    let w = World::new().await;
    for _ in 0..3 {
        w.active().await;
    }
    let mut seqs = Vec::new();
    let mut path = "/v1/audit?limit=5".to_owned();
    loop {
        let page = w.api.get(&path, &w.api.admin).await.ok(200).clone();
        seqs.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap()),
        );
        match page["next"].as_u64() {
            Some(n) => path = format!("/v1/audit?limit=5&after={n}"),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=12).collect::<Vec<u64>>());
    let by_kind = w
        .api
        .get("/v1/audit?type=mandate.activated", &w.api.admin)
        .await
        .ok(200)
        .clone();
    assert_eq!(kinds(&by_kind).len(), 3);
    let since = w
        .api
        .get("/v1/audit?since=2030-01-01T00:00:00Z", &w.api.admin)
        .await
        .ok(200)
        .clone();
    assert!(kinds(&since).is_empty());
    for bad in [
        "/v1/audit?type=mandate.exploded",
        "/v1/audit?limit=0",
        "/v1/audit?limit=1001",
        "/v1/audit?after=-1",
        "/v1/audit?since=yesterday",
        "/v1/audit?mandate=agt_01a2084501a2084501a2084501a20845",
        "/v1/audit?secret=1",
    ] {
        w.api
            .get(bad, &w.api.admin)
            .await
            .problem(400, "bad-request");
    }
}
