use chrono::{Duration, TimeZone as _, Utc};
use mandate_types::{MandateId, TenantId};
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn chain(tenant: TenantId, n: usize) -> Vec<Event> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let mandate = MandateId::generate();
    let mut head = Head::genesis();
    (0..n)
        .map(|i| {
            let kind = EventKind::ALL[i % EventKind::ALL.len()];
            let new = NewEvent::new(tenant, kind, "agent:agt_x")
                .mandate(mandate)
                .with("i", i as u64)
                .with("note", format!("event {i} — ünïcode"));
            let event = Event::chain(&head, new, t0 + Duration::nanoseconds(1_234_567 * i as i64));
            head = event.head();
            event
        })
        .collect()
}

fn verify(
    events: &[Event],
    checkpoints: &[Checkpoint],
    keys: &[PublicKey],
) -> Result<Verified, Broken> {
    let tenant = events
        .first()
        .map(|e| e.tenant_id)
        .unwrap_or_else(TenantId::generate);
    let mut v = ChainVerifier::new(tenant, checkpoints.iter().map(|c| c.seq));
    for e in events {
        v.push(e)?;
    }
    v.finish(checkpoints, keys)
}

#[test]
fn a_chain_links_every_event_to_the_one_before() {
    let events = chain(TenantId::generate(), 5);
    assert_eq!(events[0].prev_hash, GENESIS_HASH);
    assert_eq!(events[0].seq, 1);
    for pair in events.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let (key, _) = SigningKey::generate().unwrap();
    let cp = key.checkpoint(events[0].tenant_id, &events[4].head(), Utc::now());
    let ok = verify(&events, &[cp], &[key.public_key().clone()]).unwrap();
    assert_eq!(ok.events, 5);
    assert_eq!(ok.checkpoints, 1);
    assert_eq!(ok.head, events[4].head());
}

#[test]
fn the_encoding_is_stable_across_a_json_round_trip() {
    for event in chain(TenantId::generate(), 40) {
        let text = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back.computed_hash(), event.hash);
        assert_eq!(back, event);
    }
}

#[test]
fn the_canonical_form_is_sorted_and_excludes_the_hash() {
    let event = &chain(TenantId::generate(), 1)[0];
    let text = String::from_utf8(event.canonical_bytes()).unwrap();
    assert!(
        text.starts_with("{\"actor\":[\"agent:agt_x\"],\"at\":\"2026-11-23T09:00:00Z\",\"data\":{"),
        "{text}"
    );
    assert!(!text.contains("\"hash\""));
    assert!(text.contains("\"prev_hash\""));
    assert!(!text.contains(' ') || text.contains("event 0"));
}

#[test]
fn event_kinds_round_trip_by_name() {
    for kind in EventKind::ALL {
        assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), *kind);
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
    }
    assert!("mandate.exploded".parse::<EventKind>().is_err());
}

#[test]
fn missing_reordered_and_foreign_events_are_caught() {
    let events = chain(TenantId::generate(), 6);
    let mut gap = events.clone();
    gap.remove(3);
    assert_eq!(verify(&gap, &[], &[]).unwrap_err().seq, 4);
    let mut swapped = events.clone();
    swapped.swap(1, 2);
    assert_eq!(verify(&swapped, &[], &[]).unwrap_err().seq, 2);
    let other = chain(TenantId::generate(), 6);
    let mut mixed = events.clone();
    mixed[2] = other[2].clone();
    assert_eq!(verify(&mixed, &[], &[]).unwrap_err().seq, 3);
}

#[test]
fn a_truncated_tail_is_caught_by_the_checkpoint() {
    let events = chain(TenantId::generate(), 6);
    let (key, _) = SigningKey::generate().unwrap();
    let cp = key.checkpoint(events[0].tenant_id, &events[5].head(), Utc::now());
    let keys = [key.public_key().clone()];
    let err = verify(&events[..4], std::slice::from_ref(&cp), &keys).unwrap_err();
    assert_eq!(err.seq, 6);
    assert!(err.reason.contains("removed"), "{err}");
    // A rewritten tail with a recomputed hash no longer matches the signature's hash.
    let mut rewritten = events.clone();
    rewritten[5] = Event::chain(
        &events[4].head(),
        NewEvent::new(events[0].tenant_id, EventKind::Decision, "admin"),
        Utc::now(),
    );
    assert_eq!(verify(&rewritten, &[cp], &keys).unwrap_err().seq, 6);
}

#[test]
fn checkpoints_need_a_known_key_and_a_valid_signature() {
    let events = chain(TenantId::generate(), 3);
    let (key, pkcs8) = SigningKey::generate().unwrap();
    let (other, _) = SigningKey::generate().unwrap();
    let tenant = events[0].tenant_id;
    let cp = key.checkpoint(tenant, &events[2].head(), Utc::now());
    assert!(
        verify(
            &events,
            std::slice::from_ref(&cp),
            &[other.public_key().clone()]
        )
        .is_err()
    );
    let mut forged = cp.clone();
    forged.seq = 2;
    forged.hash = events[1].hash.clone();
    assert!(
        verify(&events, &[forged], &[key.public_key().clone()])
            .unwrap_err()
            .reason
            .contains("signature")
    );
    let mut garbage = cp.clone();
    garbage.signature = "!!".into();
    assert!(verify(&events, &[garbage], &[key.public_key().clone()]).is_err());
    // The stored PKCS#8 document loads back into the same key.
    let reloaded = SigningKey::from_pkcs8(&pkcs8).unwrap();
    assert_eq!(reloaded.public_key(), key.public_key());
    assert!(cp.verify(reloaded.public_key()));
    assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    assert!(!format!("{key:?}").contains(&format!("{pkcs8:?}")));
}

proptest! {
    /// Changing any byte of any event's stored JSON is caught: either the JSON no longer
    /// parses as an event, or verification names a sequence number at or before it.
    #[test]
    fn any_tampered_byte_is_caught(index in 0usize..8, offset in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let events = chain(TenantId::generate(), 8);
        let (key, _) = SigningKey::generate().unwrap();
        let cp = key.checkpoint(events[0].tenant_id, &events[7].head(), Utc::now());
        let keys = [key.public_key().clone()];
        let mut bytes = serde_json::to_vec(&events[index]).unwrap();
        let at = offset.index(bytes.len());
        bytes[at] ^= flip;
        let Ok(tampered) = serde_json::from_slice::<Event>(&bytes) else { return Ok(()) };
        if tampered == events[index] {
            // e.g. a flipped escape that decodes to the same value: nothing changed.
            return Ok(());
        }
        let mut copy = events.clone();
        copy[index] = tampered;
        let err = verify(&copy, std::slice::from_ref(&cp), &keys).unwrap_err();
        prop_assert!(err.seq <= index as u64 + 2, "{err}");
    }
}

fn arb_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The hand-written canonical encoding is byte for byte the generic one.
    #[test]
    fn direct_and_generic_canonical_bytes_agree(
        data in prop::collection::btree_map("\\PC{0,6}", arb_value(), 0..6),
        actor in prop::collection::vec("\\PC{0,12}", 0..3),
        with_ids in any::<(bool, bool, bool)>(),
        nanos in 0i64..2_000_000_000,
    ) {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap() + Duration::nanoseconds(nanos);
        let mut new = NewEvent::new(TenantId::generate(), EventKind::ToolCalled, "x");
        new.actor = actor;
        new.data = data.into_iter().collect();
        if with_ids.0 { new = new.mandate(MandateId::generate()); }
        if with_ids.1 { new = new.agent(mandate_types::AgentId::generate()); }
        if with_ids.2 { new = new.human(mandate_types::HumanId::generate()); }
        let event = Event::chain(&Head::genesis(), new, t);
        prop_assert_eq!(event.canonical_bytes(), event.canonical_bytes_generic());

        // Read back from its stored form (as verification reads it), it is the same
        // event: the same encoding, the same hash. A float must come back exactly.
        let stored = serde_json::to_string(&event).unwrap();
        let read: Event = serde_json::from_str(&stored).unwrap();
        prop_assert_eq!(serde_json::to_string(&read).unwrap(), stored);
        prop_assert_eq!(read.computed_hash(), event.hash.clone());
        prop_assert_eq!(&read, &event);
    }
}
