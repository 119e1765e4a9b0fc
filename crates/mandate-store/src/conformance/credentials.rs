//! Policy sets, grants and client-assertion replay.

use super::*;

pub async fn policy_sets_are_versioned_newest_wins(store: Arc<dyn Store>) {
    assert_eq!(store.policy_set_version().await.unwrap(), 0);
    assert!(store.latest_policy_set().await.unwrap().is_none());
    let v1 = store
        .put_policy_set("sha256:aa", r#"{"policies":[]}"#, "admin", t0())
        .await
        .unwrap();
    let v2 = store
        .put_policy_set(
            "sha256:bb",
            r#"{"policies":[{"name":"a.cedar","text":"permit (principal, action, resource);"}]}"#,
            "human:x",
            t0() + Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    assert_eq!(store.policy_set_version().await.unwrap(), 2);
    let latest = store.latest_policy_set().await.unwrap().unwrap();
    assert_eq!(latest.version, 2);
    assert_eq!(latest.digest, "sha256:bb");
    assert!(latest.source.contains("permit (principal"));
    assert_eq!(latest.created_by, "human:x");
    assert_eq!(latest.created_at, t0() + Duration::seconds(1));

    // Writers racing: every write gets its own version or a conflict, never a lost one.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_policy_set(&format!("sha256:{i}"), "{}", "admin", t0())
                .await
        }));
    }
    let mut won = BTreeSet::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(version) => assert!(won.insert(version), "version {version} given twice"),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(!won.is_empty());
    assert_eq!(
        store.policy_set_version().await.unwrap(),
        2 + won.len() as u64
    );
}

fn grant_under(m: &Mandate, jti: &str, parent: Option<&str>, depth: u8) -> Grant {
    Grant {
        jti: jti.to_owned(),
        tenant_id: m.tenant_id,
        mandate_id: Some(m.id),
        agent_id: m.terms.agent_id,
        parent_jti: parent.map(str::to_owned),
        depth,
        scope: vec!["flights.*".into()],
        cnf_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        issued_at: t0(),
        expires_at: t0() + Duration::minutes(5),
        revoked_at: None,
    }
}

pub async fn grants_revoke_down_the_delegation_tree_and_with_their_mandate(store: Arc<dyn Store>) {
    let active = activated_mandate(&*store).await;

    let root = grant_under(&active, "jti-root", None, 0);
    store.insert_grant(&root).await.unwrap();
    store
        .insert_grant(&grant_under(&active, "jti-a", Some("jti-root"), 1))
        .await
        .unwrap();
    store
        .insert_grant(&grant_under(&active, "jti-a1", Some("jti-a"), 2))
        .await
        .unwrap();
    store
        .insert_grant(&grant_under(&active, "jti-b", Some("jti-root"), 1))
        .await
        .unwrap();
    assert_eq!(
        store
            .grant(active.tenant_id, "jti-root")
            .await
            .unwrap()
            .unwrap(),
        root
    );
    // A jti is unique; an unknown parent, or one in another tenant, is refused.
    assert!(matches!(
        store.insert_grant(&root).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .insert_grant(&grant_under(&active, "jti-x", Some("nope"), 1))
            .await,
        Err(StoreError::Missing { .. })
    ));
    let other = tenant(&*store, "other").await;
    assert!(store.grant(other, "jti-root").await.unwrap().is_none());
    let mut foreign = grant_under(&active, "jti-y", Some("jti-root"), 1);
    foreign.tenant_id = other;
    assert!(matches!(
        store.insert_grant(&foreign).await,
        Err(StoreError::Missing { .. })
    ));

    // Revoking a delegated grant revokes its subtree, not its parent or siblings.
    let at = t0() + Duration::seconds(30);
    let mut revoked = store
        .revoke_grant_tree(active.tenant_id, "jti-a", at)
        .await
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, ["jti-a", "jti-a1"]);
    assert!(
        store
            .grant(active.tenant_id, "jti-a1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            == Some(at)
    );
    assert!(
        store
            .grant(active.tenant_id, "jti-b")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    // Nothing is delegated from a revoked grant; revoking again changes nothing.
    assert!(matches!(
        store
            .insert_grant(&grant_under(&active, "jti-a2", Some("jti-a"), 2))
            .await,
        Err(StoreError::Missing { .. })
    ));
    assert!(
        store
            .revoke_grant_tree(active.tenant_id, "jti-a", at + Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.revoke_grant_tree(other, "jti-root", at).await,
        Err(StoreError::Missing { .. })
    ));

    // Completing the mandate revokes every grant under it, in the same write.
    let mut done = active.clone();
    done.apply(
        MandateEvent::Complete { reason: None },
        t0() + Duration::minutes(1),
    )
    .unwrap();
    done.version += 1;
    store.update_mandate(&done, &[]).await.unwrap();
    for jti in ["jti-root", "jti-b"] {
        let g = store.grant(active.tenant_id, jti).await.unwrap().unwrap();
        assert_eq!(g.revoked_at, Some(t0() + Duration::minutes(1)), "{jti}");
    }
    assert_eq!(
        store
            .grant(active.tenant_id, "jti-a")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at),
        "an earlier revocation keeps its time"
    );
    let since = store.revoked_since(t0(), 100).await.unwrap();
    let jtis: Vec<&str> = since.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(jtis.len(), 4);
    assert_eq!(&jtis[..2], ["jti-a", "jti-a1"]);
    assert!(
        store
            .revoked_since(t0() + Duration::minutes(2), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn client_assertion_jtis_are_accepted_once(store: Arc<dyn Store>) {
    let exp = t0() + Duration::minutes(5);
    assert!(store.claim_jti("agt_1", "j1", exp, t0()).await.unwrap());
    assert!(
        !store.claim_jti("agt_1", "j1", exp, t0()).await.unwrap(),
        "a replay"
    );
    assert!(
        store.claim_jti("agt_2", "j1", exp, t0()).await.unwrap(),
        "per issuer"
    );
    // A claim is the assertion's (issuer, jti, exp): a replay carries the same signed
    // `exp`. The same jti with another `exp` is another assertion, which only its signer
    // can make; the store keys claims by expiry first (a batch's claims then land
    // together), and that one is not a replay.
    assert!(
        store
            .claim_jti("agt_1", "j1", exp + Duration::seconds(1), t0())
            .await
            .unwrap(),
        "another assertion"
    );
    assert!(
        !store
            .claim_jti("agt_1", "j1", exp + Duration::seconds(1), t0())
            .await
            .unwrap(),
        "its replay"
    );
    // Once expired the record is purged; the assertion itself is then refused for its
    // `exp` by the caller, so accepting the jti again is harmless.
    assert!(
        store
            .claim_jti("agt_1", "j1", exp, exp + Duration::seconds(1))
            .await
            .unwrap(),
        "purged"
    );
    // Concurrent claims of one jti: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.claim_jti("agt_3", "race", exp, t0()).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

pub async fn token_keys_are_published_retired_and_revocations_announced(store: Arc<dyn Store>) {
    let key = |kid: &str| TokenKey {
        kid: kid.to_owned(),
        jwk: format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"x","kid":"{kid}","alg":"EdDSA"}}"#),
        created_at: t0(),
        retire_at: None,
    };
    store.publish_token_key(&key("k1")).await.unwrap();
    store.publish_token_key(&key("k2")).await.unwrap();
    store.publish_token_key(&key("k1")).await.unwrap();
    let kids = |keys: Vec<TokenKey>| keys.into_iter().map(|k| k.kid).collect::<Vec<_>>();
    assert_eq!(kids(store.token_keys(t0()).await.unwrap()), ["k1", "k2"]);
    store
        .retire_token_key("k1", t0() + Duration::minutes(5))
        .await
        .unwrap();
    let during = store.token_keys(t0() + Duration::minutes(4)).await.unwrap();
    assert_eq!(during[0].retire_at, Some(t0() + Duration::minutes(5)));
    assert_eq!(kids(during), ["k1", "k2"]);
    assert_eq!(
        kids(store.token_keys(t0() + Duration::minutes(5)).await.unwrap()),
        ["k2"]
    );

    // Agents are found by client id in any tenant (authentication only).
    let active = activated_mandate(&*store).await;
    let agent = store
        .agent_by_client_id(active.terms.agent_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.tenant_id, active.tenant_id);
    assert!(
        store
            .agent_by_client_id(AgentId::generate())
            .await
            .unwrap()
            .is_none()
    );

    // Where the backend has a notification channel, a revocation wakes its listeners.
    if let Some(mut feed) = store.revocation_feed().await.unwrap() {
        store
            .insert_grant(&grant_under(&active, "jti-feed", None, 0))
            .await
            .unwrap();
        store
            .revoke_grant_tree(active.tenant_id, "jti-feed", t0())
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), feed.next())
            .await
            .unwrap_or_else(|_| panic!("no notification within 5 s"))
            .unwrap();
    }
}

/// The mandate `like` was made for (same tenant, grantor and agent) once more, active.
async fn another_active_mandate(store: &dyn Store, like: &Mandate) -> Mandate {
    let m = Mandate::request(
        like.tenant_id,
        like.terms.clone(),
        format!("agent:{}", like.terms.agent_id),
        t0(),
    );
    store
        .create_mandate(&m, &[note(&m, EventKind::MandateRequested)])
        .await
        .unwrap();
    consented(store, &m).await
}

/// `m` moved to a final state by `event` at `at`, stored.
async fn end_mandate(store: &dyn Store, m: &Mandate, event: MandateEvent<'_>, at: DateTime<Utc>) {
    let mut ended = m.clone();
    ended.apply(event, at).unwrap();
    ended.version += 1;
    store.update_mandate(&ended, &[]).await.unwrap();
}

pub async fn grants_are_refused_under_a_mandate_that_is_not_live(store: Arc<dyn Store>) {
    let first = activated_mandate(&*store).await;
    store
        .insert_grant(&grant_under(&first, "jti-live", None, 0))
        .await
        .unwrap();

    // Revoked, completed: no grant of its own, none delegated from one issued before.
    let revoked = another_active_mandate(&*store, &first).await;
    store
        .insert_grant(&grant_under(&revoked, "jti-r0", None, 0))
        .await
        .unwrap();
    let at = t0() + Duration::minutes(1);
    end_mandate(&*store, &revoked, MandateEvent::Revoke { reason: None }, at).await;
    let completed = another_active_mandate(&*store, &first).await;
    end_mandate(
        &*store,
        &completed,
        MandateEvent::Complete { reason: None },
        at,
    )
    .await;
    for (m, jti, parent) in [
        (&revoked, "jti-r1", None),
        (&revoked, "jti-r2", Some("jti-r0")),
        (&completed, "jti-c1", None),
    ] {
        let mut g = grant_under(m, jti, parent, u8::from(parent.is_some()));
        g.issued_at = at + Duration::seconds(1);
        g.expires_at = at + Duration::minutes(5);
        assert!(
            matches!(
                store.insert_grant(&g).await,
                Err(StoreError::Missing { .. })
            ),
            "{jti}"
        );
        assert!(
            store.grant(m.tenant_id, jti).await.unwrap().is_none(),
            "{jti}"
        );
    }

    // Still `active` in the store, but past its expiry when the grant is issued.
    let mut late = grant_under(&first, "jti-late", None, 0);
    late.issued_at = first.terms.expires_at;
    late.expires_at = first.terms.expires_at + Duration::minutes(5);
    assert!(matches!(
        store.insert_grant(&late).await,
        Err(StoreError::Missing { .. })
    ));
    let mut late_child = grant_under(&first, "jti-late-child", Some("jti-live"), 1);
    late_child.issued_at = first.terms.expires_at + Duration::seconds(1);
    assert!(matches!(
        store.insert_grant(&late_child).await,
        Err(StoreError::Missing { .. })
    ));

    // Another tenant's mandate, or one that does not exist, is not live either.
    let other = tenant(&*store, "other").await;
    let mut foreign = grant_under(&first, "jti-foreign", None, 0);
    foreign.tenant_id = other;
    assert!(matches!(
        store.insert_grant(&foreign).await,
        Err(StoreError::Missing { .. })
    ));
    let mut unknown = grant_under(&first, "jti-unknown", None, 0);
    unknown.mandate_id = Some(mandate_types::MandateId::generate());
    assert!(matches!(
        store.insert_grant(&unknown).await,
        Err(StoreError::Missing { .. })
    ));

    // A grant without a mandate (it may only request mandates) needs none.
    let mut no_mandate = grant_under(&first, "jti-none", None, 0);
    no_mandate.mandate_id = None;
    store.insert_grant(&no_mandate).await.unwrap();
}

/// Rounds of [`revocation_wins_every_race`]: `MANDATE_RACE_ROUNDS`, default 20.
fn race_rounds() -> usize {
    std::env::var("MANDATE_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Each round: grants for one mandate (new ones and ones delegated from a grant issued
/// before) written concurrently with the mandate's revocation. Once the revocation is
/// acknowledged, every grant of the mandate is revoked: each write either committed
/// before the revocation (and was revoked by it) or was refused.
pub async fn revocation_wins_every_race(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    let rounds = race_rounds();
    let first = activated_mandate(&*store).await;
    let (mut before, mut refused) = (0usize, 0usize);
    for round in 0..rounds {
        let m = another_active_mandate(&*store, &first).await;
        let root = grant_under(&m, &format!("root-{round}"), None, 0);
        store.insert_grant(&root).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(WRITERS + 1));
        let mut writers = Vec::new();
        for i in 0..WRITERS {
            let parent = (i % 2 == 1).then_some(root.jti.as_str());
            let grant = grant_under(
                &m,
                &format!("g-{round}-{i}"),
                parent,
                u8::from(parent.is_some()),
            );
            let (store, start, mandate) = (store.clone(), start.clone(), m.clone());
            writers.push(tokio::spawn(async move {
                start.wait().await;
                // Some writers start a little after the revocation.
                for _ in 0..(i % 4) {
                    tokio::task::yield_now().await;
                }
                // A third of them as a token's entry in a ledger batch (its assertion,
                // grant and event in one transaction), the rest alone.
                let result = if i % 3 == 2 {
                    let entry = crate::Entry {
                        assertions: vec![used(&grant.jti)],
                        event: Some(issued(&mandate, &grant.jti)),
                        grant: Some(grant.clone()),
                        ..crate::Entry::default()
                    };
                    match store.commit_entries(&[entry], t0()).await {
                        Ok(mut outcomes) => match outcomes.pop() {
                            Some(Ok(Some(_))) => Ok(()),
                            Some(Err(refused)) => Err(refused.into()),
                            other => panic!("an entry's outcome: {other:?}"),
                        },
                        Err(e) => Err(e),
                    }
                } else {
                    store.insert_grant(&grant).await
                };
                (grant.jti, result)
            }));
        }
        start.wait().await;
        end_mandate(
            &*store,
            &m,
            MandateEvent::Revoke { reason: None },
            t0() + Duration::minutes(1),
        )
        .await;
        // The revocation is acknowledged: no grant of this mandate is live, whenever
        // its write is answered.
        for writer in writers {
            let (jti, result) = writer.await.unwrap();
            let stored = store.grant(m.tenant_id, &jti).await.unwrap();
            match result {
                Ok(()) => {
                    let g = stored.unwrap_or_else(|| panic!("round {round}: {jti} was not stored"));
                    assert!(
                        g.revoked_at.is_some(),
                        "round {round}: {jti} is live after its mandate was revoked"
                    );
                    before += 1;
                }
                Err(StoreError::Missing { .. }) => {
                    assert!(stored.is_none(), "round {round}: {jti} refused yet stored");
                    refused += 1;
                }
                Err(e) => panic!("round {round}: {jti}: unexpected error: {e}"),
            }
        }
        let root = store.grant(m.tenant_id, &root.jti).await.unwrap().unwrap();
        assert!(root.revoked_at.is_some(), "round {round}: the root is live");
    }
    eprintln!(
        "revocation race: {rounds} rounds, {before} grants written before the revocation \
         (and revoked by it), {refused} refused after it"
    );
}

fn used(jti: &str) -> crate::UsedAssertion {
    crate::UsedAssertion {
        issuer: "agt_1".to_owned(),
        jti: jti.to_owned(),
        expires_at: t0() + Duration::minutes(5),
    }
}

fn issued(m: &Mandate, jti: &str) -> NewEvent {
    NewEvent::new(m.tenant_id, EventKind::TokenIssued, "agent:test")
        .mandate(m.id)
        .with("jti", jti)
}

/// One batch of every kind of entry (`round` names its jtis) committed after the
/// chain's `head`: the new head.
async fn mixed_batch_commits_what_passed(
    store: &dyn Store,
    live: &Mandate,
    ended: &Mandate,
    at: DateTime<Utc>,
    head: u64,
    round: &str,
) -> u64 {
    let id = |name: &str| format!("{round}-{name}");
    let mut late = grant_under(ended, &id("e-3"), None, 0);
    late.issued_at = at;
    let batch = vec![
        crate::Entry {
            assertions: vec![used(&id("j1"))],
            once: None,
            revoke: None,
            issue: None,
            grant: Some(grant_under(live, &id("e-1"), None, 0)),
            event: Some(issued(live, &id("e-1"))),
        },
        // The same assertion again, in the same batch: a replay.
        crate::Entry {
            assertions: vec![used(&id("j1"))],
            once: None,
            revoke: None,
            issue: None,
            grant: Some(grant_under(live, &id("e-2"), None, 0)),
            event: Some(issued(live, &id("e-2"))),
        },
        // Under a revoked mandate: refused, but its assertion is spent.
        crate::Entry {
            assertions: vec![used(&id("j3"))],
            once: None,
            revoke: None,
            issue: None,
            grant: Some(late),
            event: Some(issued(ended, &id("e-3"))),
        },
        crate::Entry::event(issued(live, &id("e-4"))),
        crate::Entry {
            assertions: vec![used(&id("j5"))],
            ..crate::Entry::default()
        },
    ];
    let outcomes = store.commit_entries(&batch, at).await.unwrap();
    assert_eq!(outcomes.len(), 5);
    let first = outcomes[0].clone().unwrap().unwrap();
    assert_eq!(first.seq, head + 1);
    assert_eq!(
        outcomes[1],
        Err(crate::Refusal::Replay {
            issuer: "agt_1".into()
        })
    );
    assert!(matches!(outcomes[2], Err(crate::Refusal::Missing { .. })));
    let fourth = outcomes[3].clone().unwrap().unwrap();
    assert_eq!(
        fourth.seq,
        head + 2,
        "the chain has no gap where refusals were"
    );
    assert_eq!(fourth.prev_hash, first.hash);
    assert_eq!(outcomes[4], Ok(None));
    assert!(
        store
            .grant(live.tenant_id, &id("e-1"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .grant(live.tenant_id, &id("e-2"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .grant(live.tenant_id, &id("e-3"))
            .await
            .unwrap()
            .is_none()
    );
    for jti in [id("j1"), id("j3"), id("j5")] {
        assert!(
            !store
                .claim_jti("agt_1", &jti, t0() + Duration::minutes(5), at)
                .await
                .unwrap(),
            "{jti} was used"
        );
    }
    let after = store
        .audit_records(live.tenant_id, head, 1_000)
        .await
        .unwrap();
    assert_eq!(after.len(), 2, "only the committed entries' events");
    head + 2
}

/// Entries of one batch: each commits its assertions, its grant and its event together;
/// a refused one writes neither grant nor event (its assertions stay used), the others
/// commit around it with an unbroken chain; a batch that fails writes nothing at all.
pub async fn entries_commit_their_writes_with_their_event_or_nothing(store: Arc<dyn Store>) {
    let live = activated_mandate(&*store).await;
    let ended = another_active_mandate(&*store, &live).await;
    end_mandate(
        &*store,
        &ended,
        MandateEvent::Revoke { reason: None },
        t0() + Duration::minutes(1),
    )
    .await;
    let before = store.audit_records(live.tenant_id, 0, 1_000).await.unwrap();
    let mut head = before.last().map_or(0, |r| r.seq);
    let at = t0() + Duration::minutes(2);
    // Twice: the second batch follows one this store committed (an adapter may take
    // another way for it, e.g. chaining on a head it remembers).
    for round in ["a", "b"] {
        head = mixed_batch_commits_what_passed(&*store, &live, &ended, at, head, round).await;
    }
    // A batch the database refuses (a grant whose jti is taken) writes nothing, not even
    // the entries before the one that failed.
    let failing = vec![
        crate::Entry {
            assertions: vec![used("j6")],
            once: None,
            revoke: None,
            issue: None,
            grant: Some(grant_under(&live, "e-6", None, 0)),
            event: Some(issued(&live, "e-6")),
        },
        crate::Entry {
            assertions: vec![used("j7")],
            once: None,
            revoke: None,
            issue: None,
            grant: Some(grant_under(&live, "a-e-1", None, 0)),
            event: Some(issued(&live, "a-e-1 again")),
        },
    ];
    assert!(store.commit_entries(&failing, at).await.is_err());
    assert!(store.grant(live.tenant_id, "e-6").await.unwrap().is_none());
    let unchanged = store
        .audit_records(live.tenant_id, head, 1_000)
        .await
        .unwrap();
    assert_eq!(unchanged.len(), 0);
    assert!(
        store
            .claim_jti("agt_1", "j6", t0() + Duration::minutes(5), at)
            .await
            .unwrap(),
        "the failed batch's assertions were not recorded"
    );
    // The chain goes on after the failed batch.
    let next = store
        .commit_entries(&[crate::Entry::event(issued(&live, "e-8"))], at)
        .await
        .unwrap();
    assert_eq!(next[0].clone().unwrap().unwrap().seq, head + 1);

    // An authorization code spent by the entry that issues with it: once. A second
    // entry spending it, in the same batch or a later one, is refused with nothing
    // written; an expired code is refused too.
    let code = |key: &str, expires_at| crate::OnceRecord {
        kind: crate::OnceKind::AuthorizationCode,
        key_hash: key.to_owned(),
        tenant_id: live.tenant_id,
        data: "{}".into(),
        expires_at,
        used_at: None,
    };
    store
        .put_once(&code("c-1", at + Duration::minutes(1)))
        .await
        .unwrap();
    store
        .put_once(&code("c-old", at - Duration::seconds(1)))
        .await
        .unwrap();
    let spend = |key: &str, jti: &str| crate::Entry {
        once: Some(crate::SpentOnce {
            kind: crate::OnceKind::AuthorizationCode,
            key_hash: key.to_owned(),
        }),
        grant: Some(grant_under(&live, jti, None, 0)),
        event: Some(issued(&live, jti)),
        ..crate::Entry::default()
    };
    let spent = store
        .commit_entries(
            &[
                spend("c-1", "o-1"),
                spend("c-1", "o-2"),
                spend("c-old", "o-3"),
            ],
            at,
        )
        .await
        .unwrap();
    assert!(matches!(spent[0], Ok(Some(_))), "{spent:?}");
    assert_eq!(spent[1], Err(crate::Refusal::Used));
    assert_eq!(spent[2], Err(crate::Refusal::Used));
    let later = store
        .commit_entries(&[spend("c-1", "o-4")], at)
        .await
        .unwrap();
    assert_eq!(later[0], Err(crate::Refusal::Used));
    for (jti, kept) in [
        ("o-1", true),
        ("o-2", false),
        ("o-3", false),
        ("o-4", false),
    ] {
        assert_eq!(
            store.grant(live.tenant_id, jti).await.unwrap().is_some(),
            kept,
            "{jti}"
        );
    }
    let record = store
        .once(crate::OnceKind::AuthorizationCode, "c-1")
        .await
        .unwrap()
        .unwrap();
    assert!(record.used_at.is_some());
    let head = head + 1;

    // A refresh token rotated in a batch: the entry spends one and issues the next,
    // stored (unused) only when the entry passed; a refused entry issues nothing.
    let refresh = |key: &str, expires_at| crate::OnceRecord {
        kind: crate::OnceKind::RefreshToken,
        key_hash: key.to_owned(),
        tenant_id: live.tenant_id,
        data: "{\"family\":\"o-1\"}".into(),
        expires_at,
        used_at: None,
    };
    let month = at + Duration::days(30);
    let rotate = |spent: &str, next: &str, jti: &str, parent: Option<&str>| crate::Entry {
        once: Some(crate::SpentOnce {
            kind: crate::OnceKind::RefreshToken,
            key_hash: spent.to_owned(),
        }),
        grant: Some(grant_under(&live, jti, parent, 0)),
        issue: Some(refresh(next, month)),
        event: Some(issued(&live, jti)),
        ..crate::Entry::default()
    };
    let first = crate::Entry {
        issue: Some(refresh("rt-1", month)),
        event: Some(issued(&live, "rt-first")),
        ..crate::Entry::default()
    };
    assert!(first.has_writes());
    let done = store.commit_entries(&[first], at).await.unwrap();
    assert!(matches!(done[0], Ok(Some(_))), "{done:?}");
    let rotated = store
        .commit_entries(
            &[
                rotate("rt-1", "rt-2", "rg-1", Some("o-1")),
                rotate("rt-1", "rt-2b", "rg-2", Some("o-1")),
                rotate("rt-unknown", "rt-3", "rg-3", Some("o-1")),
            ],
            at,
        )
        .await
        .unwrap();
    assert!(matches!(rotated[0], Ok(Some(_))), "{rotated:?}");
    assert_eq!(rotated[1], Err(crate::Refusal::Used));
    assert_eq!(rotated[2], Err(crate::Refusal::Used));
    let kind = crate::OnceKind::RefreshToken;
    assert!(
        store
            .once(kind, "rt-1")
            .await
            .unwrap()
            .unwrap()
            .used_at
            .is_some()
    );
    let next = store.once(kind, "rt-2").await.unwrap().unwrap();
    assert_eq!(next.used_at, None);
    assert_eq!(next.expires_at, month);
    assert_eq!(next.data, "{\"family\":\"o-1\"}");
    for key in ["rt-2b", "rt-3"] {
        assert!(store.once(kind, key).await.unwrap().is_none(), "{key}");
    }
    // The family's root revoked: the next rotation is refused (its token spent, the
    // next one not stored).
    store
        .revoke_grant_tree(live.tenant_id, "o-1", at)
        .await
        .unwrap();
    let ended = store
        .commit_entries(&[rotate("rt-2", "rt-4", "rg-4", Some("o-1"))], at)
        .await
        .unwrap();
    assert!(
        matches!(ended[0], Err(crate::Refusal::Missing { .. })),
        "{ended:?}"
    );
    assert!(
        store
            .once(kind, "rt-2")
            .await
            .unwrap()
            .unwrap()
            .used_at
            .is_some()
    );
    assert!(store.once(kind, "rt-4").await.unwrap().is_none());
    assert!(store.grant(live.tenant_id, "rg-4").await.unwrap().is_none());
    // Records of one kind never purge another's: a code stored now leaves the
    // month-long refresh tokens, and issuing refresh tokens leaves live codes.
    store
        .put_once(&code("c-purge", at + Duration::minutes(1)))
        .await
        .unwrap();
    assert!(store.once(kind, "rt-2").await.unwrap().is_some());
    let done = store
        .commit_entries(
            &[crate::Entry {
                issue: Some(refresh("rt-5", month)),
                ..crate::Entry::default()
            }],
            at,
        )
        .await
        .unwrap();
    assert_eq!(done[0], Ok(None));
    assert!(
        store
            .once(crate::OnceKind::AuthorizationCode, "c-purge")
            .await
            .unwrap()
            .is_some()
    );
    let head = head + 2;

    // Concurrent batches using one assertion: exactly one issues; the others write
    // neither grant nor event.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let entry = crate::Entry {
            assertions: vec![used("race")],
            once: None,
            revoke: None,
            issue: None,
            grant: Some(grant_under(&live, &format!("r-{i}"), None, 0)),
            event: Some(issued(&live, &format!("r-{i}"))),
        };
        tasks.push(tokio::spawn(async move {
            store.commit_entries(&[entry], at).await.unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap().remove(0) {
            Ok(Some(_)) => wins += 1,
            Err(crate::Refusal::Replay { .. }) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    let raced = store
        .audit_records(live.tenant_id, head + 1, 1_000)
        .await
        .unwrap();
    assert_eq!(raced.len(), 1);

    // A revocation's entry: the tree revoked in the batch, its event naming what was
    // revoked now; nothing left to revoke, no event; an unknown grant, refused.
    let child = grant_under(&live, "e-1-child", Some("a-e-1"), 1);
    store.insert_grant(&child).await.unwrap();
    let revoke = |jti: &str| crate::Entry {
        revoke: Some(crate::RevokeTree {
            tenant_id: live.tenant_id,
            jti: jti.to_owned(),
        }),
        event: Some(
            NewEvent::new(live.tenant_id, EventKind::TokenRevoked, "admin").with("jti", jti),
        ),
        ..crate::Entry::default()
    };
    let revoked = store
        .commit_entries(&[revoke("a-e-1"), revoke("a-e-1"), revoke("nope")], at)
        .await
        .unwrap();
    let event = revoked[0].clone().unwrap().unwrap();
    let mut named: Vec<&str> = event.data["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    named.sort_unstable();
    assert_eq!(named, ["a-e-1", "e-1-child"]);
    assert_eq!(revoked[1], Ok(None), "nothing left to revoke: no event");
    assert!(matches!(revoked[2], Err(crate::Refusal::Missing { .. })));
    for jti in ["a-e-1", "e-1-child"] {
        let g = store.grant(live.tenant_id, jti).await.unwrap().unwrap();
        assert!(g.revoked_at.is_some(), "{jti}");
    }
}
