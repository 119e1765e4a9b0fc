#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Tampering with the ledger behind Mandate's back: every changed byte of every stored
//! event and checkpoint, every removed event, is caught by verification, which names
//! the first bad sequence number.

use std::sync::Arc;

use chrono::{TimeZone as _, Utc};
use mandate_audit::{EventKind, NewEvent, SigningKey};
use mandate_core::{Service, Verification};
use mandate_store::AuditLog as _;
use mandate_store_sql::SqliteStore;
use mandate_types::{FixedClock, TenantId};
use sqlx::{Connection as _, SqliteConnection};

struct Ledger {
    service: Service,
    tenant: TenantId,
    db: SqliteConnection,
    _dir: tempfile::TempDir,
}

async fn ledger(events: u64) -> Ledger {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap());
    let service = Service::new(store.clone(), Arc::new(clock));
    let tenant = TenantId::generate();
    let (key, _) = SigningKey::generate().unwrap();
    for i in 0..events {
        let e = NewEvent::new(
            tenant,
            EventKind::ALL[usize::try_from(i).unwrap() % 8],
            "agent:agt_x",
        )
        .with("i", i)
        .with("note", "ünï");
        store.append_events(&[e], Utc::now()).await.unwrap();
        if i == events / 2 || i + 1 == events {
            service.checkpoint_now(&key).await.unwrap();
        }
    }
    let url = format!("sqlite://{}", dir.path().join("mandate.db").display());
    let db = SqliteConnection::connect(&url).await.unwrap();
    Ledger {
        service,
        tenant,
        db,
        _dir: dir,
    }
}

impl Ledger {
    async fn verify(&self) -> Verification {
        self.service.verify_audit(self.tenant, None).await.unwrap()
    }

    async fn rows(&mut self, table: &str) -> Vec<(i64, String)> {
        sqlx::query_as(&format!("SELECT seq, doc FROM {table} ORDER BY seq"))
            .fetch_all(&mut self.db)
            .await
            .unwrap()
    }

    async fn set(&mut self, table: &str, seq: i64, doc: &str) {
        sqlx::query(&format!("UPDATE {table} SET doc = $1 WHERE seq = $2"))
            .bind(doc)
            .bind(seq)
            .execute(&mut self.db)
            .await
            .unwrap();
    }
}

/// Replaces byte `i` of `doc` by another ASCII byte, keeping the text valid UTF-8.
fn flip(doc: &str, i: usize) -> Option<String> {
    let mut bytes = doc.as_bytes().to_vec();
    if !bytes[i].is_ascii() {
        return None;
    }
    bytes[i] = if bytes[i] == b'0' {
        b'1'
    } else if bytes[i].is_ascii_alphabetic() {
        bytes[i] ^ 0x20
    } else {
        b'0'
    };
    String::from_utf8(bytes).ok()
}

#[tokio::test]
async fn every_changed_byte_is_caught() {
    let mut l = ledger(12).await;
    let Verification::Intact(ok) = l.verify().await else {
        panic!("a fresh ledger verifies")
    };
    assert_eq!(ok.events, 12);
    assert_eq!(ok.checkpoints, 2);

    for table in ["audit_events", "audit_checkpoints"] {
        for (seq, doc) in l.rows(table).await {
            for i in 0..doc.len() {
                let Some(tampered) = flip(&doc, i) else {
                    continue;
                };
                l.set(table, seq, &tampered).await;
                match l.verify().await {
                    Verification::Broken(b) => assert!(
                        u64::try_from(seq).unwrap() >= b.seq,
                        "{table} seq {seq} byte {i}: reported at {}",
                        b.seq
                    ),
                    Verification::Intact(_) => {
                        panic!("{table} seq {seq}: byte {i} changed unnoticed: {tampered}")
                    }
                }
                l.set(table, seq, &doc).await;
            }
        }
    }
    assert!(matches!(l.verify().await, Verification::Intact(_)));
}

#[tokio::test]
async fn removed_or_forged_events_are_caught_at_the_first_bad_seq() {
    let mut l = ledger(10).await;
    // Whoever can write the file can insert and delete as they like (the head's
    // compare-and-swap guards the writers, not against tampering): the verifier must
    // catch what follows.
    // Removing an event in the middle: the gap is named.
    let rows = l.rows("audit_events").await;
    sqlx::query("DELETE FROM audit_events WHERE seq = 4")
        .execute(&mut l.db)
        .await
        .unwrap();
    let Verification::Broken(b) = l.verify().await else {
        panic!("a gap verifies")
    };
    assert_eq!(b.seq, 4);
    // Put back as the store keys it (its tenant's number × 2^40 + seq).
    sqlx::query("INSERT INTO audit_events (id, tenant_id, seq, at, kind, hash, doc) VALUES ((SELECT num FROM audit_heads WHERE tenant_id = $1) * 1099511627776 + 4, $1, 4, 0, 'decision', 'x', $2)")
        .bind(l.tenant.to_string())
        .bind(&rows[3].1)
        .execute(&mut l.db)
        .await
        .unwrap();
    assert!(matches!(l.verify().await, Verification::Intact(_)));

    // Removing the tail: the last signed checkpoint names events that are gone.
    sqlx::query("DELETE FROM audit_events WHERE seq >= 9")
        .execute(&mut l.db)
        .await
        .unwrap();
    let Verification::Broken(b) = l.verify().await else {
        panic!("a cut tail verifies")
    };
    assert_eq!(b.seq, 10);

    // A checkpoint signed by a key the store does not know is refused.
    let (stranger, _) = SigningKey::generate().unwrap();
    let head = mandate_audit::Head {
        seq: 8,
        hash: serde_json::from_str::<mandate_audit::Event>(&rows[7].1)
            .unwrap()
            .hash,
    };
    let forged = serde_json::to_string(&stranger.checkpoint(l.tenant, &head, Utc::now())).unwrap();
    sqlx::query("DELETE FROM audit_checkpoints")
        .execute(&mut l.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO audit_checkpoints (tenant_id, seq, doc) VALUES ($1, 8, $2)")
        .bind(l.tenant.to_string())
        .bind(&forged)
        .execute(&mut l.db)
        .await
        .unwrap();
    let Verification::Broken(b) = l.verify().await else {
        panic!("an unknown signer verifies")
    };
    assert_eq!(b.seq, 8);
    assert!(b.reason.contains("unknown key"), "{}", b.reason);
}
