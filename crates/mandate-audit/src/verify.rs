use std::collections::BTreeMap;

use mandate_types::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Checkpoint, Event, Head, PublicKey, SCHEMA_VERSION};

/// Why the chain is not what it claims to be, at the first sequence number that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("the audit chain breaks at seq {seq}: {reason}")]
pub struct Broken {
    pub seq: u64,
    pub reason: String,
}

/// The outcome of a verification that found nothing wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verified {
    pub events: u64,
    pub checkpoints: u64,
    pub head: Head,
}

/// Checks a tenant's events in sequence order, one at a time (so a ledger of any size
/// streams through it), then its checkpoints.
#[derive(Debug)]
pub struct ChainVerifier {
    tenant: TenantId,
    head: Head,
    events: u64,
    /// The recomputed hash at every checkpointed sequence number seen so far.
    wanted: BTreeMap<u64, Option<String>>,
}

impl ChainVerifier {
    /// `checkpoint_seqs`: the sequence numbers the stored checkpoints name.
    pub fn new(tenant: TenantId, checkpoint_seqs: impl IntoIterator<Item = u64>) -> Self {
        ChainVerifier {
            tenant,
            head: Head::genesis(),
            events: 0,
            wanted: checkpoint_seqs.into_iter().map(|s| (s, None)).collect(),
        }
    }

    /// The next event. It must follow the previous one exactly and hash to what it says.
    pub fn push(&mut self, event: &Event) -> Result<(), Broken> {
        let expected = self.head.seq.saturating_add(1);
        let broken = |reason: String| Broken {
            seq: expected,
            reason,
        };
        if event.seq != expected {
            return Err(broken(format!(
                "expected seq {expected}, found seq {} (events are missing or reordered)",
                event.seq
            )));
        }
        if event.tenant_id != self.tenant {
            return Err(broken("the event belongs to another tenant".to_owned()));
        }
        if event.schema != SCHEMA_VERSION {
            return Err(broken(format!("unknown schema version {}", event.schema)));
        }
        if event.prev_hash != self.head.hash {
            return Err(broken(
                "`prev_hash` is not the previous event's hash".to_owned(),
            ));
        }
        let computed = event.computed_hash();
        if event.hash != computed {
            return Err(broken(
                "the event's content does not match its hash".to_owned(),
            ));
        }
        if let Some(slot) = self.wanted.get_mut(&event.seq) {
            *slot = Some(computed);
        }
        self.head = event.head();
        self.events += 1;
        Ok(())
    }

    /// Checks every checkpoint against the chain just read and the trusted keys.
    pub fn finish(
        self,
        checkpoints: &[Checkpoint],
        keys: &[PublicKey],
    ) -> Result<Verified, Broken> {
        let mut ordered: Vec<&Checkpoint> = checkpoints.iter().collect();
        ordered.sort_by_key(|c| c.seq);
        for checkpoint in &ordered {
            let broken = |reason: String| Broken {
                seq: checkpoint.seq,
                reason,
            };
            if checkpoint.tenant_id != self.tenant {
                return Err(broken("a checkpoint of another tenant".to_owned()));
            }
            let Some(key) = keys.iter().find(|k| k.key_id == checkpoint.key_id) else {
                return Err(broken(format!(
                    "checkpoint signed by unknown key `{}`",
                    checkpoint.key_id
                )));
            };
            if !checkpoint.verify(key) {
                return Err(broken("the checkpoint's signature is invalid".to_owned()));
            }
            match self.wanted.get(&checkpoint.seq) {
                Some(Some(hash)) if *hash == checkpoint.hash => {}
                Some(Some(_)) => {
                    return Err(broken(
                        "the chain's hash differs from the signed checkpoint".to_owned(),
                    ));
                }
                _ => {
                    return Err(broken(format!(
                        "a signed checkpoint names seq {} but the chain ends at seq {} (events were removed)",
                        checkpoint.seq, self.head.seq
                    )));
                }
            }
        }
        Ok(Verified {
            events: self.events,
            checkpoints: u64::try_from(ordered.len()).unwrap_or(u64::MAX),
            head: self.head,
        })
    }
}
