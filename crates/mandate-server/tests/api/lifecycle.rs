// The mandate lifecycle over HTTP: the happy path, and every illegal transition —
// each refused with its problem type and leaving the mandate exactly as it was.

use crate::support::World;
use chrono::Duration;
use serde_json::{Value, json};

#[tokio::test]
async fn agent_requests_grantor_and_owner_consent_then_agent_completes() {
    let w = World::new().await;
    let id = w.requested().await;
    let m = w.mandate(&id).await;
    assert_eq!(m["status"], "requested");
    assert_eq!(m["requested_by"], format!("agent:{}", w.agent));
    let awaiting: Vec<&str> = m["awaiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(awaiting.len(), 2);
    assert!(awaiting.contains(&w.alice.as_str()) && awaiting.contains(&w.bob.as_str()));
    let hash = m["terms_hash"].as_str().unwrap().to_owned();
    assert!(hash.starts_with("sha256:"));

    // The grantor alone is not enough: Bob's data is affected.
    let after_alice = w
        .api
        .post(
            &format!("/v1/mandates/{id}/consent"),
            &w.alice_token,
            &json!({"decision": "granted", "terms_hash": hash}),
        )
        .await;
    assert_eq!(after_alice.ok(200)["status"], "requested");
    assert_eq!(after_alice.body["awaiting"], json!([w.bob]));

    w.api.clock.advance(Duration::minutes(1));
    let after_bob = w
        .api
        .post(
            &format!("/v1/mandates/{id}/consent"),
            &w.bob_token,
            &json!({"decision": "granted", "comment": "fine by me"}),
        )
        .await;
    let active = after_bob.ok(200);
    assert_eq!(active["status"], "active");
    assert_eq!(active["awaiting"], json!([]));
    assert!(active["activated_at"].is_string());

    // Every step is visible in GET /v1/mandates/{id}, to each party.
    for token in [&w.api.admin, &w.agent_token, &w.alice_token, &w.bob_token] {
        let seen = w.api.get(&format!("/v1/mandates/{id}"), token).await;
        let consents = seen.ok(200)["consents"].as_array().unwrap();
        assert_eq!(consents.len(), 2);
        assert_eq!(consents[0]["human_id"], w.alice);
        assert_eq!(consents[1]["human_id"], w.bob);
        assert_eq!(consents[1]["comment"], "fine by me");
        for c in consents {
            assert_eq!(c["decision"], "granted");
            assert_eq!(c["terms_hash"], hash.as_str());
            assert_eq!(c["channel"], "api");
        }
    }

    let done = w
        .api
        .post(
            &format!("/v1/mandates/{id}/complete"),
            &w.agent_token,
            &json!({"reason": "booked"}),
        )
        .await;
    assert_eq!(done.ok(200)["status"], "completed");
    let m = w.mandate(&id).await;
    assert_eq!(m["status"], "completed");
    assert_eq!(m["end_reason"], "booked");
    assert!(m["ended_at"].is_string());
}

#[tokio::test]
async fn one_refusal_denies_the_mandate() {
    let w = World::new().await;
    let id = w.requested().await;
    w.api
        .post(
            &format!("/v1/mandates/{id}/consent"),
            &w.alice_token,
            &json!({"decision": "granted"}),
        )
        .await
        .ok(200);
    let denied = w
        .api
        .post(
            &format!("/v1/mandates/{id}/consent"),
            &w.bob_token,
            &json!({"decision": "denied", "comment": "not my data"}),
        )
        .await;
    assert_eq!(denied.ok(200)["status"], "denied");
    assert_eq!(w.mandate(&id).await["end_reason"], "consent denied");
}

#[tokio::test]
async fn a_human_may_grant_in_their_own_name_and_be_done_when_no_owner_is_named() {
    let w = World::new().await;
    let mut terms = w.terms();
    terms["owners"] = json!([]);
    let created = w.api.post("/v1/mandates", &w.alice_token, &terms).await;
    let id = created.ok(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["requested_by"], format!("human:{}", w.alice));
    let active = w
        .api
        .post(
            &format!("/v1/mandates/{id}/consent"),
            &w.alice_token,
            &json!({"decision": "granted"}),
        )
        .await;
    assert_eq!(active.ok(200)["status"], "active");
    let revoked = w
        .api
        .post(
            &format!("/v1/mandates/{id}/revoke"),
            &w.alice_token,
            &Value::Null,
        )
        .await;
    // A JSON `null` body is not an EndRequest; an empty body is fine (see below).
    revoked.problem(422, "invalid-request");
    let revoked = w
        .api
        .send(
            axum::http::Method::POST,
            &format!("/v1/mandates/{id}/revoke"),
            Some(&w.alice_token),
            None,
        )
        .await;
    assert_eq!(revoked.ok(200)["status"], "revoked");
}

/// Sends `action` and checks it is refused with `status`/`slug` and that the mandate
/// did not change at all.
async fn refused(
    w: &World,
    id: &str,
    token: &str,
    action: &str,
    body: Value,
    status: u16,
    slug: &str,
) -> String {
    let before = w.mandate(id).await;
    let reply = w
        .api
        .post(&format!("/v1/mandates/{id}/{action}"), token, &body)
        .await;
    let detail = reply.problem(status, slug);
    let after = w.mandate(id).await;
    assert_eq!(before, after, "a refused `{action}` changed the mandate");
    detail
}

#[tokio::test]
async fn every_illegal_transition_is_refused_and_changes_nothing() {
    let w = World::new().await;
    let grant = json!({"decision": "granted"});
    let deny = json!({"decision": "denied"});
    let end = json!({});

    // requested: cannot complete or revoke.
    let id = w.requested().await;
    let d = refused(
        &w,
        &id,
        &w.agent_token,
        "complete",
        end.clone(),
        409,
        "illegal-transition",
    )
    .await;
    assert!(d.contains("requested"), "{d}");
    refused(
        &w,
        &id,
        &w.alice_token,
        "revoke",
        end.clone(),
        409,
        "illegal-transition",
    )
    .await;
    // Answering twice is refused, whatever the second answer.
    w.api
        .post(
            &format!("/v1/mandates/{id}/consent"),
            &w.alice_token,
            &grant,
        )
        .await
        .ok(200);
    refused(
        &w,
        &id,
        &w.alice_token,
        "consent",
        grant.clone(),
        409,
        "already-answered",
    )
    .await;
    refused(
        &w,
        &id,
        &w.alice_token,
        "consent",
        deny.clone(),
        409,
        "already-answered",
    )
    .await;

    // active: cannot be consented to again.
    let id = w.active().await;
    refused(
        &w,
        &id,
        &w.bob_token,
        "consent",
        grant.clone(),
        409,
        "illegal-transition",
    )
    .await;

    // Every final state refuses every event.
    let completed = w.active().await;
    w.api
        .post(
            &format!("/v1/mandates/{completed}/complete"),
            &w.agent_token,
            &end,
        )
        .await
        .ok(200);
    let revoked = w.active().await;
    w.api
        .post(
            &format!("/v1/mandates/{revoked}/revoke"),
            &w.api.admin,
            &end,
        )
        .await
        .ok(200);
    let denied = w.requested().await;
    w.api
        .post(
            &format!("/v1/mandates/{denied}/consent"),
            &w.bob_token,
            &deny,
        )
        .await
        .ok(200);
    for id in [&completed, &revoked, &denied] {
        refused(
            &w,
            id,
            &w.api.admin,
            "complete",
            end.clone(),
            409,
            "illegal-transition",
        )
        .await;
        refused(
            &w,
            id,
            &w.api.admin,
            "revoke",
            end.clone(),
            409,
            "illegal-transition",
        )
        .await;
    }
    for id in [&completed, &revoked] {
        refused(
            &w,
            id,
            &w.alice_token,
            "consent",
            grant.clone(),
            409,
            "illegal-transition",
        )
        .await;
    }
    // On the denied one Alice has not answered; it is still final.
    refused(
        &w,
        &denied,
        &w.alice_token,
        "consent",
        grant.clone(),
        409,
        "illegal-transition",
    )
    .await;
}

#[tokio::test]
async fn expired_mandates_refuse_everything_with_their_own_problem_type() {
    let w = World::new().await;
    let requested = w.requested().await;
    let active = w.active().await;
    w.api.clock.advance(Duration::hours(2));
    for id in [&requested, &active] {
        // Reading settles the expiry; the sweeper does the same in the background.
        assert_eq!(w.mandate(id).await["status"], "expired");
        assert_eq!(w.mandate(id).await["end_reason"], "expired");
        refused(
            &w,
            id,
            &w.bob_token,
            "consent",
            json!({"decision": "granted"}),
            409,
            "mandate-expired",
        )
        .await;
        refused(
            &w,
            id,
            &w.agent_token,
            "complete",
            json!({}),
            409,
            "mandate-expired",
        )
        .await;
        refused(
            &w,
            id,
            &w.alice_token,
            "revoke",
            json!({}),
            409,
            "mandate-expired",
        )
        .await;
    }
}

#[tokio::test]
async fn the_sweeper_expires_mandates_nobody_reads() {
    let w = World::new().await;
    let id = w.active().await;
    assert_eq!(w.api.service.expire_due(100).await.unwrap(), 0);
    w.api.clock.advance(Duration::minutes(61));
    assert_eq!(w.api.service.expire_due(100).await.unwrap(), 1);
    assert_eq!(w.api.service.expire_due(100).await.unwrap(), 0);
    let listed = w.api.get("/v1/mandates?status=expired", &w.api.admin).await;
    assert_eq!(listed.ok(200)["items"][0]["id"], id.as_str());
}

#[tokio::test]
async fn consent_is_bound_to_the_terms_shown() {
    let w = World::new().await;
    let id = w.requested().await;
    let stale = "sha256:".to_owned() + &"0".repeat(64);
    let d = refused(
        &w,
        &id,
        &w.alice_token,
        "consent",
        json!({"decision": "granted", "terms_hash": stale}),
        409,
        "terms-changed",
    )
    .await;
    assert!(d.contains("sha256:"), "{d}");
}

#[tokio::test]
async fn only_the_right_people_may_act() {
    let w = World::new().await;
    let id = w.requested().await;
    // Carol is neither grantor nor owner; agents and admins cannot consent for people.
    w.api
        .post(
            &format!("/v1/mandates/{id}/consent"),
            &w.carol_token,
            &json!({"decision": "granted"}),
        )
        .await
        .problem(404, "not-found");
    refused(
        &w,
        &id,
        &w.agent_token,
        "consent",
        json!({"decision": "granted"}),
        403,
        "forbidden",
    )
    .await;
    refused(
        &w,
        &id,
        &w.api.admin,
        "consent",
        json!({"decision": "granted"}),
        403,
        "forbidden",
    )
    .await;

    let id = w.active().await;
    // An agent cannot revoke its own mandate (it completes it); an owner may revoke.
    refused(
        &w,
        &id,
        &w.agent_token,
        "revoke",
        json!({}),
        403,
        "forbidden",
    )
    .await;
    refused(
        &w,
        &id,
        &w.bob_token,
        "complete",
        json!({}),
        403,
        "forbidden",
    )
    .await;
    w.api
        .get(&format!("/v1/mandates/{id}"), &w.carol_token)
        .await
        .problem(404, "not-found");
    assert_eq!(
        w.api
            .post(
                &format!("/v1/mandates/{id}/revoke"),
                &w.bob_token,
                &json!({})
            )
            .await
            .ok(200)["status"],
        "revoked"
    );

    // An agent requests only for itself; a human grants only in their own name.
    let mut terms = w.terms();
    terms["agent_id"] = json!(w.other_agent);
    w.api
        .post("/v1/mandates", &w.agent_token, &terms)
        .await
        .problem(403, "forbidden");
    w.api
        .post("/v1/mandates", &w.bob_token, &w.terms())
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn listings_show_each_caller_only_their_mandates() {
    let w = World::new().await;
    let a = w.requested().await;
    let mut theirs = w.terms();
    theirs["agent_id"] = json!(w.other_agent);
    let b = w
        .api
        .post("/v1/mandates", &w.api.admin, &theirs)
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let ids = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = w.api.get("/v1/mandates", &w.api.admin).await;
    all.ok(200);
    assert_eq!(ids(&all).len(), 2);
    let mine = w.api.get("/v1/mandates", &w.agent_token).await;
    mine.ok(200);
    assert_eq!(ids(&mine), vec![a.clone()]);
    // An agent asking for another agent's mandates still sees only its own.
    let sneaky = w
        .api
        .get(
            &format!("/v1/mandates?agent={}", w.other_agent),
            &w.agent_token,
        )
        .await;
    sneaky.ok(200);
    assert!(ids(&sneaky).is_empty());
    let by_agent = w
        .api
        .get(
            &format!("/v1/mandates?agent={}", w.other_agent),
            &w.api.admin,
        )
        .await;
    by_agent.ok(200);
    assert_eq!(ids(&by_agent), vec![b]);
    let none = w.api.get("/v1/mandates?status=active", &w.api.admin).await;
    none.ok(200);
    assert!(ids(&none).is_empty());
    // Bob is a named owner of both: he sees both, to answer them.
    let bob = w.api.get("/v1/mandates", &w.bob_token).await;
    bob.ok(200);
    assert_eq!(ids(&bob).len(), 2);
    let bob_as_alice = w
        .api
        .get(&format!("/v1/mandates?consenter={}", w.alice), &w.bob_token)
        .await;
    bob_as_alice.ok(200);
    assert!(ids(&bob_as_alice).is_empty());
    let carol = w.api.get("/v1/mandates", &w.carol_token).await;
    carol.ok(200);
    assert!(ids(&carol).is_empty());
}
