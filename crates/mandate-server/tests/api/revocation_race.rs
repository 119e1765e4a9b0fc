// Revocation wins every race: task tokens requested (client_credentials), delegated
// and renewed for one mandate while its owner revokes it. Once the revocation is
// acknowledged, no token of the mandate is active, whenever it was requested or
// answered. Rounds: `MANDATE_RACE_ROUNDS` (default 10).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;

use crate::tokens::{ACCESS, BEARER, EXCHANGE, Setup};

/// Token requests racing each round's revocation.
const REQUESTS: usize = 9;

fn rounds() -> usize {
    std::env::var("MANDATE_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

#[derive(Debug, Clone, Copy)]
enum Ask {
    Issue,
    Delegate,
    Renew,
}

async fn ask(
    s: &Setup,
    kind: Ask,
    mandate: &str,
    parent: &str,
    jti: &str,
) -> crate::support::Reply {
    match kind {
        Ask::Issue => s.issue(mandate, jti, None).await,
        Ask::Delegate => s.exchange(1, parent, None, jti).await,
        Ask::Renew => {
            let client = s.assertion(0, jti);
            s.form(
                "/oauth2/token",
                &[
                    ("grant_type", EXCHANGE),
                    ("client_assertion_type", BEARER),
                    ("client_assertion", &client),
                    ("subject_token", parent),
                    ("subject_token_type", ACCESS),
                ],
                &[],
            )
            .await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_wins_every_race() {
    let s = Arc::new(Setup::new().await);
    let rounds = rounds();
    let mut issued = 0usize;
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..rounds {
        let mandate = s.mandate().await;
        let parent = s.issue(&mandate, &format!("p{round}"), None).await.ok(200)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        // Each answer is announced; the revocation goes out after the first `wait`
        // answers (0 to 3, by round), so it lands at a different point of the burst.
        let (answered, mut answers) = mpsc::unbounded_channel::<()>();
        let mut requests = Vec::new();
        for i in 0..REQUESTS {
            let kind = [Ask::Issue, Ask::Delegate, Ask::Renew][i % 3];
            let (s, mandate, parent, answered) =
                (s.clone(), mandate.clone(), parent.clone(), answered.clone());
            requests.push(tokio::spawn(async move {
                let reply = ask(&s, kind, &mandate, &parent, &format!("r{round}-{i}")).await;
                let _ = answered.send(());
                (kind, reply)
            }));
        }
        drop(answered);
        let wait = round % 4;
        let revoke = {
            let (s, mandate) = (s.clone(), mandate.clone());
            tokio::spawn(async move {
                for _ in 0..wait {
                    answers.recv().await;
                }
                s.api
                    .post(
                        &format!("/v1/mandates/{mandate}/revoke"),
                        &s.alice_token,
                        &json!({"reason": "changed my mind"}),
                    )
                    .await
            })
        };
        let revoked = revoke.await.unwrap();
        assert_eq!(revoked.ok(200)["status"], "revoked");
        // The revocation is acknowledged; whatever is answered now, and whatever was
        // answered before, is inactive.
        let mut tokens = vec![parent];
        for request in requests {
            let (kind, reply) = request.await.unwrap();
            match reply.status.as_u16() {
                200 => {
                    tokens.push(reply.body["access_token"].as_str().unwrap().to_owned());
                    issued += 1;
                }
                400 => {
                    let error = reply.body["error"].as_str().unwrap_or_default();
                    assert!(
                        error == "invalid_grant",
                        "round {round}, {kind:?}: {}",
                        reply.body
                    );
                    let why = reply.body["error_description"].as_str().unwrap_or_default();
                    *refused.entry(format!("{error}: {why}")).or_default() += 1;
                }
                other => panic!("round {round}, {kind:?}: {other} {}", reply.body),
            }
        }
        for (n, token) in tokens.iter().enumerate() {
            assert_eq!(
                s.introspect(token).await,
                json!({"active": false}),
                "round {round}: token {n} of the revoked mandate is active"
            );
        }
    }
    eprintln!("revocation race: {rounds} rounds, {issued} tokens issued; refused: {refused:#?}");
}
