//! A person who authorizes the same client again: equal terms reuse the mandate the
//! client holds, other terms replace it (revoked, with the reason audited), and a
//! step-up shows the person exactly which tools are added.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::oauth_authorize::{Browser, REDIRECT, Setup, oauth_error, register};
use crate::oauth_refresh::claims;
use crate::support::Api;

/// The mandates a listing shows as active, by id.
async fn active_mandates(api: &Api) -> Vec<String> {
    let page = api.get("/v1/mandates?limit=500", &api.admin).await;
    page.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] == "active")
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// How many mandates there are, in any status.
async fn all_mandates(api: &Api) -> usize {
    api.get("/v1/mandates?limit=500", &api.admin).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len()
}

/// The `mandate.revoked` events of `mandate`.
async fn revocations(api: &Api, mandate: &str) -> Value {
    api.get(
        &format!("/v1/audit?mandate={mandate}&type=mandate.revoked"),
        &api.admin,
    )
    .await
    .ok(200)["items"]
        .clone()
}

/// A person who authorizes the same client again for the same resource replaces its
/// earlier mandate when the terms differ (here: the budget): one stays active, the
/// earlier one is revoked by the person with the new one named in the audited reason,
/// and its refresh token is dead. Another client's mandate is left alone.
#[tokio::test]
async fn a_new_consent_replaces_the_clients_earlier_mandate() {
    let mut s = Setup::new().await;
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    let code = s.code(&mut alice).await;
    let first_refresh = s.redeem_code(&code).await.ok(200)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = active_mandates(&s.api).await;
    assert_eq!(first.len(), 1);

    let code = s
        .code_with(&mut alice, "http://127.0.0.1:8731/mcp/fx", "fx.echo", "20")
        .await;
    s.redeem_code(&code).await.ok(200);
    let now_active = active_mandates(&s.api).await;
    assert_eq!(
        now_active.len(),
        1,
        "one mandate per client, person and resource"
    );
    assert_ne!(now_active, first);
    let revoked = revocations(&s.api, &first[0]).await;
    let event = &revoked[0];
    assert_eq!(event["actor"], json!([format!("human:{}", s.alice)]));
    let reason = event["data"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("replaced by mandate {}", now_active[0])),
        "{reason}"
    );
    // Alice's console lists the one active mandate, not the replaced one.
    let (r, home) = alice.get("/ui/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(home.contains("Your active mandates"), "{home}");
    assert!(home.contains(&now_active[0]), "{home}");
    assert!(!home.contains(&first[0]), "{home}");
    let refused = s
        .redeem(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
            ("client_id", &s.client),
        ])
        .await;
    oauth_error(&refused, 400, "invalid_grant");

    // Another client of the same person: its own mandate, beside the first client's.
    let other = register(
        &s.api,
        &json!({"client_name": "Other", "redirect_uris": [REDIRECT]}),
    )
    .await
    .ok(201)["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(alice);
    s.client = other;
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    let code = s.code(&mut alice).await;
    s.redeem_code(&code).await.ok(200);
    let both = active_mandates(&s.api).await;
    assert_eq!(both.len(), 2);
    assert!(both.contains(&now_active[0]));

    // This client for another resource (another tool server): kept beside it; the
    // whole gateway (`/mcp`) covers both, and replaces both.
    let gx = s
        .api
        .post(
            "/v1/tool-servers",
            &s.api.admin,
            &json!({"name": "gx", "transport": {"kind": "mcp_http", "url": "http://127.0.0.1:9/mcp"}}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.api
        .post(
            "/v1/tools",
            &s.api.admin,
            &json!({"server_id": gx, "name": "ping", "risk_tier": "read"}),
        )
        .await
        .ok(201);
    let code = s
        .code_for(&mut alice, "http://127.0.0.1:8731/mcp/gx", "gx.ping")
        .await;
    s.redeem_code_for(&code, "http://127.0.0.1:8731/mcp/gx")
        .await
        .ok(200);
    assert_eq!(active_mandates(&s.api).await.len(), 3);
    let code = s
        .code_for(&mut alice, "http://127.0.0.1:8731/mcp", "gx.ping")
        .await;
    s.redeem_code_for(&code, "http://127.0.0.1:8731/mcp")
        .await
        .ok(200);
    let last = active_mandates(&s.api).await;
    assert_eq!(last.len(), 2, "the first client's mandate and the new one");
    assert!(last.contains(&now_active[0]));
}

/// A person who authorizes the same client again with exactly the terms of its active
/// mandate (scope, resource, data ceiling, budgets, mode, approvals, intent) gets a
/// code for that mandate: none is created, none is revoked, and the earlier refresh
/// token still works.
#[tokio::test]
async fn a_consent_with_equal_terms_reuses_the_clients_mandate() {
    let s = Setup::new().await;
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    let code = s.code(&mut alice).await;
    let first = s.redeem_code(&code).await.ok(200).clone();
    let mandate = active_mandates(&s.api).await;
    assert_eq!(mandate.len(), 1);
    assert_eq!(all_mandates(&s.api).await, 1);

    let code = s.code(&mut alice).await;
    let again = s.redeem_code(&code).await.ok(200).clone();
    assert_eq!(active_mandates(&s.api).await, mandate, "the same mandate");
    assert_eq!(all_mandates(&s.api).await, 1, "no mandate was created");
    assert_eq!(revocations(&s.api, &mandate[0]).await, json!([]));
    let mandate_of = |t: &Value| claims(t["access_token"].as_str().unwrap())["mandate"].clone();
    assert_eq!(mandate_of(&again), mandate_of(&first));
    assert_eq!(mandate_of(&again), mandate[0].as_str());
    // The earlier refresh token was not touched.
    s.redeem(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ("client_id", &s.client),
    ])
    .await
    .ok(200);
}

/// A step-up re-authorization (asking for the scope a 403 `insufficient_scope` named)
/// shows the person which tools it adds to what the client has, and the grant replaces
/// the client's earlier mandate.
#[tokio::test]
async fn a_step_up_shows_what_is_added_and_replaces_the_mandate() {
    let s = Setup::new().await;
    let mut alice = Browser::new(&s.api);
    alice.sign_in("alice@example.com").await;
    let step_up = s.authorize_url(&[("scope", Some("fx.echo fx.wipe"))]);
    let (r, page) = alice.get(&step_up).await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(
        !page.contains(r#"class="added""#),
        "nothing to add to: {page}"
    );
    let code = s.code(&mut alice).await;
    s.redeem_code(&code).await.ok(200);
    let first = active_mandates(&s.api).await;

    let (r, page) = alice.get(&step_up).await;
    assert_eq!(r.status, StatusCode::OK, "{page}");
    let row = |name: &str| {
        page.split("<tr>")
            .find(|row| row.contains(&format!(r#"value="{name}""#)))
            .unwrap_or_else(|| panic!("no row for {name}: {page}"))
            .to_owned()
    };
    assert!(row("fx.wipe").contains(r#"class="added""#), "{page}");
    assert!(!row("fx.echo").contains(r#"class="added""#), "{page}");
    let code = s
        .grant(&mut alice, &page, &["fx.echo", "fx.wipe"], "10")
        .await;
    let tokens = s.redeem_code(&code).await.ok(200).clone();
    assert_eq!(tokens["scope"], "fx.echo fx.wipe", "{tokens}");
    let now = active_mandates(&s.api).await;
    assert_eq!(now.len(), 1, "the step-up replaced the mandate");
    assert_ne!(now, first);
    assert_eq!(
        revocations(&s.api, &first[0])
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
