//! The audit ledger's writer (group commit), its checkpointer, and reading the ledger
//! back: queries, traces and verification.
//!
//! ```text
//!   append(e) ─┐                       ┌─► store.append_events_unsynced(batch)
//!   append(e) ─┼─► channel ─► writer ──┤     (one transaction)
//!   append(e) ─┘   (bounded)  drains   │   store.sync()  (one fsync, while the next
//!                             up to N  │     batch commits)
//!                                      └─► each appender is answered only after the
//!                                          sync: Ok(event) = durable; Err = it may not
//!                                          be recorded, so the caller must not act
//! ```
//!
//! The split pays only when another batch can commit during the sync: a batch that
//! finds nothing queued behind it and no earlier batch being synced is committed
//! durably instead ([`mandate_store::AuditLog::append_events`], on SQLite one commit
//! with its own fsync), and its appenders are answered when that returns.
//!
//! A token's writes ride the same batch: [`Ledger::commit`] takes an [`Entry`] (the
//! client assertions it used, the grant it issued, its event), and a batch holding any
//! such entry is committed with [`mandate_store::AuditLog::commit_entries_unsynced`] —
//! still one transaction and one fsync, with each entry's checks (a replayed `jti`, a
//! mandate that ended) made inside it.
//!
//! A committed batch is visible before it is durable (on SQLite, where the sync is apart
//! from the commit): the next batch chains on it, and a reader may see it. Nothing is
//! acted on before the sync: no appender is answered, no token handed out. A power loss
//! in between loses a suffix of the chain, never a hole (the WAL's frames are checked in
//! order on recovery); a checkpoint signed over such a head is written by a commit that
//! syncs the WAL first, so it is durable only with the events it signs.
//!
//! A third task indexes recorded events for queries, in large chunks behind the writer.
//!
//! Fail closed: an appender whose event could not be made durable gets an error and
//! must not perform the action it describes. The writer keeps running; the next batch
//! simply tries the store again, so the service recovers by itself when the store does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mandate_audit::{
    Broken, ChainVerifier, Checkpoint, Event, Head, NewEvent, PublicKey, SigningKey, Verified,
};
use mandate_domain::Principal;
use mandate_store::{AuditFilter, Committed, Entry, Store};
use mandate_types::{Clock, MandateId, TenantId};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::{CoreError, Service};

/// Tuning of the writer and the checkpointer.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// The most events one transaction carries.
    pub max_batch: usize,
    /// Appenders that may wait at once before `append` itself waits (back-pressure).
    pub queue: usize,
    /// A checkpoint is signed once this many events were appended since the last one…
    pub checkpoint_every_events: u64,
    /// …or this much time passed with new events.
    pub checkpoint_every: Duration,
    /// Whether this process keeps the lookup index up to date (one replica is enough).
    pub index: bool,
    /// Whether every batch is made durable apart from its commit ([`Store::sync`],
    /// overlapping the next batch's commit), even when nothing waits behind it. By
    /// default only batches with work queued behind them are: a batch that finds the
    /// queue empty and no earlier batch being synced commits durably (on SQLite its
    /// own fsync), which spares a lone appender the hand-off to the sync thread and
    /// back.
    pub sync_apart: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            max_batch: 2_000,
            queue: 65_536,
            checkpoint_every_events: 10_000,
            checkpoint_every: Duration::from_secs(10),
            index: true,
            sync_apart: false,
        }
    }
}

struct Pending {
    entry: Entry,
    /// `None`: nobody waits (an outcome recorded after the fact); a failure is logged.
    done: Option<oneshot::Sender<Result<Committed, CoreError>>>,
}

/// A handle for appending events; clones share one writer.
#[derive(Clone)]
pub struct Ledger {
    queue: mpsc::Sender<Pending>,
    since_checkpoint: Arc<AtomicU64>,
    checkpoint_due: Arc<Notify>,
    every_events: u64,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

fn unwritable() -> CoreError {
    CoreError::Unavailable("the audit ledger cannot be written".to_owned())
}

impl Ledger {
    /// Starts the writer and the checkpointer on the current runtime. They stop when
    /// every `Ledger` handle is dropped.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        signer: Arc<SigningKey>,
        config: LedgerConfig,
    ) -> Ledger {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let store_for_index = store.clone();
        let since_checkpoint = Arc::new(AtomicU64::new(0));
        let checkpoint_due = Arc::new(Notify::new());
        tokio::spawn(write(
            store.clone(),
            clock.clone(),
            rx,
            config.max_batch.max(1),
            config.sync_apart,
        ));
        tokio::spawn(checkpoint(
            store,
            clock,
            signer,
            checkpoint_due.clone(),
            Arc::downgrade(&since_checkpoint),
            config.checkpoint_every,
        ));
        if config.index {
            tokio::spawn(index(store_for_index, Arc::downgrade(&since_checkpoint)));
        }
        Ledger {
            queue: tx,
            since_checkpoint,
            checkpoint_due,
            every_events: config.checkpoint_every_events.max(1),
        }
    }

    /// Appends one event and returns once it is durable. An error means it was not
    /// recorded: the caller must not go on with the action it describes.
    pub async fn append(&self, event: NewEvent) -> Result<Event, CoreError> {
        match self.commit(Entry::event(event)).await? {
            Ok(Some(event)) => Ok(event),
            // An entry that writes nothing but its event has nothing to refuse.
            Ok(None) | Err(_) => Err(CoreError::Internal(
                "the audit batch lost an event".to_owned(),
            )),
        }
    }

    /// Commits `entry` (the assertions it used, the grant it issued, its event) in the
    /// next batch and returns once that batch committed: `Ok(Ok(_))` — all of it is
    /// durable; `Ok(Err(refusal))` — a check in the transaction refused it and its grant
    /// and event were not written; `Err` — nothing of it may have been recorded, so the
    /// caller must not go on with the action it describes.
    pub async fn commit(&self, entry: Entry) -> Result<Committed, CoreError> {
        if entry.event.is_none() && !entry.has_writes() {
            return Ok(Ok(None));
        }
        let counted = entry.event.is_some();
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                entry,
                done: Some(done),
            })
            .await
            .map_err(|_| unwritable())?;
        let committed = answer.await.map_err(|_| unwritable())??;
        if counted && committed.is_ok() {
            self.count_one();
        }
        Ok(committed)
    }

    /// Appends one event in the next batch without waiting for it: for what is recorded
    /// after the fact (a call's outcome), where nothing waits on its durability. A
    /// failure is logged by the writer, never lost silently.
    pub fn append_detached(&self, event: NewEvent) {
        let pending = Pending {
            entry: Entry::event(event),
            done: None,
        };
        match self.queue.try_send(pending) {
            Ok(()) => self.count_one(),
            Err(mpsc::error::TrySendError::Full(pending)) => {
                // Back-pressure: queue behind the waiting appenders instead of dropping.
                let ledger = self.clone();
                tokio::spawn(async move {
                    if ledger.queue.send(pending).await.is_ok() {
                        ledger.count_one();
                    } else {
                        tracing::error!("audit ledger closed; an outcome was not recorded");
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("audit ledger closed; an outcome was not recorded");
            }
        }
    }

    /// Returns once everything appended through this ledger before the call is
    /// committed (or has failed, each appender told so): a barrier in the queue, which
    /// the writer answers with the batch it rides in. Used at shutdown so that the
    /// outcomes appended without waiting are on disk before the process exits.
    pub async fn flush(&self) -> Result<(), CoreError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                entry: Entry::default(),
                done: Some(done),
            })
            .await
            .map_err(|_| unwritable())?;
        answer.await.map_err(|_| unwritable())?.map(|_| ())
    }

    fn count_one(&self) {
        let n = self.since_checkpoint.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.every_events {
            self.checkpoint_due.notify_one();
        }
    }
}

/// Batches committed and not yet durable at once: one is synced while the next
/// commits (see [`mandate_store::AuditLog::sync`]). More would only make smaller
/// batches when syncs are slow.
const UNSYNCED_BATCHES: usize = 2;

async fn write(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    sync_apart: bool,
) {
    let unsynced = Arc::new(Semaphore::new(UNSYNCED_BATCHES));
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    loop {
        // The batch forms while an earlier one is made durable.
        let Ok(slot) = unsynced.clone().acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        ride_along(&mut rx, &mut batch, max_batch).await;
        // Nothing else waits and no earlier batch is being synced: no batch would
        // commit during this one's sync, so its commit syncs itself (on SQLite the
        // writer's own fsync; no hand-off to the sync thread and back). Everything
        // committed before it is durable by then too.
        let durable =
            !sync_apart && rx.is_empty() && unsynced.available_permits() + 1 == UNSYNCED_BATCHES;
        let started = std::time::Instant::now();
        let size = batch.len();
        // Barriers (`flush`) write nothing; they are answered with the batch's fate.
        let mut barriers = Vec::new();
        batch.retain_mut(|p| {
            if p.entry.event.is_some() || p.entry.has_writes() {
                return true;
            }
            barriers.extend(p.done.take());
            false
        });
        let (written, answers) = if batch.is_empty() {
            (Ok(Vec::new()), Vec::new())
        } else if batch.iter().any(|p| p.entry.has_writes()) {
            let (entries, answers): (Vec<Entry>, Vec<_>) =
                batch.drain(..).map(|p| (p.entry, p.done)).unzip();
            let written = if durable {
                store.commit_entries(&entries, clock.now()).await
            } else {
                store.commit_entries_unsynced(&entries, clock.now()).await
            };
            (written, answers)
        } else {
            // Events only (the common batch): the store's fastest append.
            let (events, answers): (Vec<NewEvent>, Vec<_>) = batch
                .drain(..)
                .filter_map(|p| p.entry.event.map(|e| (e, p.done)))
                .unzip();
            let written = if durable {
                store.append_events(&events, clock.now()).await
            } else {
                store.append_events_unsynced(&events, clock.now()).await
            };
            let written =
                written.map(|recorded| recorded.into_iter().map(|e| Ok(Some(e))).collect());
            (written, answers)
        };
        tracing::trace!(
            events = size,
            durable,
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "audit batch committed"
        );
        if durable {
            answer(written, answers, barriers);
            drop(slot);
            continue;
        }
        let store = store.clone();
        tokio::spawn(async move {
            // INVARIANT: appenders are answered only once their batch is durable.
            let written = match written {
                Ok(outcomes) => store.sync().await.map(|()| outcomes),
                Err(e) => Err(e),
            };
            // Durable (or failed) before anyone hears of it: the next batch sees no
            // sync under way once an appender is answered.
            drop(slot);
            answer(written, answers, barriers);
        });
    }
}

/// Tells each appender of a batch, and each barrier that rode in it, what became of it.
fn answer(
    written: Result<Vec<Committed>, mandate_store::StoreError>,
    answers: Vec<Option<oneshot::Sender<Result<Committed, CoreError>>>>,
    barriers: Vec<oneshot::Sender<Result<Committed, CoreError>>>,
) {
    let failed = !matches!(&written, Ok(outcomes) if outcomes.len() == answers.len());
    for barrier in barriers {
        let _ = barrier.send(if failed {
            Err(unwritable())
        } else {
            Ok(Ok(None))
        });
    }
    match written {
        Ok(outcomes) if outcomes.len() == answers.len() => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                if let Some(answer) = answer {
                    let _ = answer.send(Ok(outcome));
                }
            }
        }
        Ok(_) => {
            tracing::error!("the store recorded a different number of audit entries");
            for answer in answers.into_iter().flatten() {
                let _ = answer.send(Err(CoreError::Internal(
                    "audit batch size mismatch".to_owned(),
                )));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, entries = answers.len(), "audit ledger write failed; refusing the actions");
            for answer in answers.into_iter().flatten() {
                let _ = answer.send(Err(unwritable()));
            }
        }
    }
}

/// How long events nobody waits on (a call's outcome) wait for an entry someone does.
const DETACHED_LINGER: Duration = Duration::from_millis(2);

/// A batch of detached events only waits up to [`DETACHED_LINGER`] for an awaited entry
/// (the next call's decision, a barrier) and rides in its commit: with few clients, a
/// call's outcome and the next call's decision share one transaction and one fsync
/// instead of the decision queuing behind the outcome's. Nothing awaited is delayed; a
/// crash can lose what waits here, as it could lose what waits in the queue (outcomes
/// are records after the fact; `flush` at shutdown writes them).
async fn ride_along(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, max: usize) {
    if batch.iter().any(|p| p.done.is_some()) {
        return;
    }
    let deadline = tokio::time::sleep(DETACHED_LINGER);
    tokio::pin!(deadline);
    while batch.len() < max {
        tokio::select! {
            biased;
            n = rx.recv_many(batch, max - batch.len()) => {
                if n == 0 || batch.iter().any(|p| p.done.is_some()) {
                    return;
                }
            }
            () = &mut deadline => return,
        }
    }
}

/// Keeps the ledger's lookup index close behind the appenders, in large chunks: one
/// pass every 500 ms, and passes back to back only while a backlog of whole chunks
/// remains. Chasing the head while appenders run would index a handful of events per
/// transaction, one commit (and on SQLite one fsync) each, competing with the writer.
/// A pass writes about one index page per mandate it touches, so fewer, larger passes
/// write fewer pages per event (`mandate audit load`, 1 024 mandates, SQLite: 5 000
/// every 250 ms ≈ 49 000 events/s appended and indexed, 20 000 every 500 ms ≈ 59 000);
/// the chunk bounds how long one pass holds SQLite's writer from the appenders.
async fn index(store: Arc<dyn Store>, alive: std::sync::Weak<AtomicU64>) {
    const CHUNK: u32 = 20_000;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if alive.upgrade().is_none() {
            return;
        }
        loop {
            match store.index_audit(CHUNK).await {
                Ok(done) if done >= u64::from(CHUNK) => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "audit indexing failed; will retry");
                    break;
                }
            }
        }
    }
}

async fn checkpoint(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    signer: Arc<SigningKey>,
    due: Arc<Notify>,
    since: std::sync::Weak<AtomicU64>,
    every: Duration,
) {
    let mut signed: std::collections::HashMap<TenantId, u64> = std::collections::HashMap::new();
    loop {
        tokio::select! {
            () = due.notified() => {}
            () = tokio::time::sleep(every) => {}
        }
        // Every `Ledger` handle is gone: nothing more will be appended through it.
        let Some(since) = since.upgrade() else { return };
        since.store(0, Ordering::Relaxed);
        if let Err(e) = sign_heads(&*store, &*clock, &signer, &mut signed).await {
            tracing::warn!(error = %e, "audit checkpoint failed; will retry");
        }
    }
}

/// Signs every tenant head that moved since its last checkpoint.
pub(crate) async fn sign_heads(
    store: &dyn Store,
    clock: &dyn Clock,
    signer: &SigningKey,
    signed: &mut std::collections::HashMap<TenantId, u64>,
) -> Result<usize, CoreError> {
    let mut made = 0;
    for (tenant, head) in store.audit_heads().await? {
        if signed.get(&tenant).is_some_and(|seq| *seq >= head.seq) {
            continue;
        }
        store
            .add_checkpoint(&signer.checkpoint(tenant, &head, clock.now()))
            .await?;
        signed.insert(tenant, head.seq);
        made += 1;
    }
    Ok(made)
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Verification {
    /// The whole chain and every checkpoint are intact.
    Intact(Verified),
    /// The first place where they are not.
    Broken(Broken),
}

const VERIFY_PAGE: u32 = 5_000;

impl Service {
    /// Signs a checkpoint of every tenant's current head now (used at shutdown and by
    /// `mandate audit checkpoint`).
    pub async fn checkpoint_now(&self, signer: &SigningKey) -> Result<usize, CoreError> {
        store_key(&*self.store, signer).await?;
        sign_heads(
            &*self.store,
            &*self.clock,
            signer,
            &mut std::collections::HashMap::new(),
        )
        .await
    }

    /// Verifies the caller's tenant's ledger (admin).
    pub async fn verify_audit_as(&self, caller: &Principal) -> Result<Verification, CoreError> {
        let tenant = self.require_admin(caller)?;
        self.verify_audit(tenant, None).await
    }

    /// Checks `tenant`'s whole chain and its checkpoints against the registered keys
    /// (and, when given, only against `trusted` keys).
    pub async fn verify_audit(
        &self,
        tenant: TenantId,
        trusted: Option<&[PublicKey]>,
    ) -> Result<Verification, CoreError> {
        let keys = match trusted {
            Some(keys) => keys.to_vec(),
            None => self.store.audit_keys().await?,
        };
        let mut checkpoints = Vec::new();
        for record in self.store.checkpoint_records(tenant).await? {
            match serde_json::from_str::<Checkpoint>(&record.doc) {
                Ok(cp) if cp.seq == record.seq && exact(&cp, &record.doc) => checkpoints.push(cp),
                _ => {
                    return Ok(Verification::Broken(Broken {
                        seq: record.seq,
                        reason: "the stored checkpoint is not the one that was signed".to_owned(),
                    }));
                }
            }
        }
        let mut verifier = ChainVerifier::new(tenant, checkpoints.iter().map(|c| c.seq));
        let mut after = 0;
        loop {
            let records = self.store.audit_records(tenant, after, VERIFY_PAGE).await?;
            let Some(last) = records.last() else { break };
            after = last.seq;
            for record in &records {
                let event = match serde_json::from_str::<Event>(&record.doc) {
                    Ok(event) if event.seq == record.seq && exact(&event, &record.doc) => event,
                    _ => {
                        return Ok(Verification::Broken(Broken {
                            seq: record.seq,
                            reason: "the stored event is not the event that was written".to_owned(),
                        }));
                    }
                };
                if let Err(broken) = verifier.push(&event) {
                    return Ok(Verification::Broken(broken));
                }
            }
        }
        Ok(match verifier.finish(&checkpoints, &keys) {
            Ok(ok) => Verification::Intact(ok),
            Err(broken) => Verification::Broken(broken),
        })
    }

    /// Audit events the caller may read: an admin any of its tenant's; anyone else only
    /// those of a mandate they can see, named in `filter.mandate`.
    pub async fn audit_events(
        &self,
        caller: &Principal,
        filter: AuditFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Event>, CoreError> {
        if !matches!(caller, Principal::Admin { .. }) {
            let Some(mandate) = filter.mandate else {
                return Err(CoreError::Forbidden(
                    "only an administrator may read the whole audit log; name a `mandate`"
                        .to_owned(),
                ));
            };
            self.visible_mandate(caller, mandate).await?;
        }
        Ok(self
            .store
            .audit_events(caller.tenant(), &filter, after, limit.clamp(1, 1_001))
            .await?)
    }

    async fn visible_mandate(&self, caller: &Principal, id: MandateId) -> Result<(), CoreError> {
        self.store
            .mandate(caller.tenant(), id)
            .await?
            .filter(|m| crate::mandates::visible_to(m, caller))
            .map(|_| ())
            .ok_or_else(|| CoreError::not_found("mandate", id))
    }

    /// The current head of the caller's chain (admin).
    pub async fn audit_head(&self, caller: &Principal) -> Result<Head, CoreError> {
        let tenant = self.require_admin(caller)?;
        Ok(self
            .store
            .audit_heads()
            .await?
            .into_iter()
            .find(|(t, _)| *t == tenant)
            .map(|(_, h)| h)
            .unwrap_or_else(Head::genesis))
    }
}

/// Whether `stored` is byte for byte the encoding the store was given. The hash covers
/// the parsed content; this catches the rest (a change that parses to the same value,
/// such as `Z` → `z` in a time), so that no stored byte can change unnoticed.
fn exact<T: serde::Serialize>(value: &T, stored: &str) -> bool {
    serde_json::to_string(value).is_ok_and(|encoded| encoded == stored)
}

/// Registers `signer`'s public key so that verifiers find it.
pub async fn store_key(store: &dyn Store, signer: &SigningKey) -> Result<(), CoreError> {
    Ok(store.add_audit_key(signer.public_key()).await?)
}
