//! Operator policies: where they live, hot reloading, and the `/v1/policies` use cases.
//!
//! They live in one of two homes. A **directory** (`--policies DIR`: `.cedar` files,
//! `.cedarschema` fragments, `entities.json`) is policy-as-code: every replica reads
//! its own checkout, and a set put through the API is written into it (each file
//! atomically, stale files removed). Otherwise the **store** keeps them, versioned, so
//! every replica on one database decides alike: a put stores the next version and each
//! replica's watcher picks it up. Either way a set is compiled before anything is
//! written; one that fails is refused with every problem, and the running set stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::Principal;
use mandate_policy::{CompiledSet, Pdp, PolicyInfo, PolicySetError, PolicySource};
use mandate_store::{Store, StoreError};
use serde::Serialize;
use tokio::sync::Mutex;
use utoipa::ToSchema;

use crate::Service;
use crate::error::CoreError;

/// Where the operator's policies live.
#[derive(Debug, Clone)]
enum Home {
    /// Only in memory (tests): a put lasts until the process ends.
    Memory,
    Dir(PathBuf),
    Store(Arc<dyn Store>),
}

/// The running policy set and where it comes from.
#[derive(Debug, Clone)]
pub struct PolicyAdmin {
    pdp: Arc<Pdp>,
    home: Home,
    /// The store version running (store home only).
    version: Arc<AtomicU64>,
    /// Serialises writers (API puts and the watcher's reloads).
    writing: Arc<Mutex<()>>,
}

/// What a compiled set holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicySummary {
    /// `sha256:` over the operator's files.
    pub digest: String,
    pub operator_policies: usize,
    /// Built-in policies first, then the operator's, by id.
    #[schema(value_type = Vec<Object>)]
    pub policies: Vec<PolicyInfo>,
}

impl PolicySummary {
    fn of(set: &CompiledSet) -> Self {
        PolicySummary {
            digest: set.digest().to_owned(),
            operator_policies: set.operator_policy_count(),
            policies: set.policies().into_iter().cloned().collect(),
        }
    }
}

impl PolicyAdmin {
    /// Mandate's built-in policies only, held in memory (tests, and no directory).
    pub fn builtin() -> Self {
        // The built-in set is compiled in every test run; should it ever fail, decisions
        // fall back to a set that compiles nothing and therefore permits nothing.
        let set = CompiledSet::builtin().unwrap_or_else(|_| CompiledSet::empty());
        PolicyAdmin::new(set, Home::Memory, 0)
    }

    fn new(set: CompiledSet, home: Home, version: u64) -> Self {
        PolicyAdmin {
            pdp: Arc::new(Pdp::new(set)),
            home,
            version: Arc::new(AtomicU64::new(version)),
            writing: Arc::new(Mutex::new(())),
        }
    }

    /// Loads the newest set the store holds (the built-ins alone if none). A stored set
    /// that no longer compiles is an error, for the same reason as a directory's.
    pub async fn from_store(store: Arc<dyn Store>) -> Result<Self, CoreError> {
        let (set, version) = match store.latest_policy_set().await? {
            None => (CompiledSet::builtin()?, 0),
            Some(stored) => (compile_stored(&stored.source)?, stored.version),
        };
        Ok(PolicyAdmin::new(set, Home::Store(store), version))
    }

    /// Loads `dir` (created when missing). A set that does not compile is an error:
    /// starting without the operator's forbids would allow what they deny.
    pub fn from_dir(dir: &Path) -> Result<Self, PolicySetError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| PolicySetError::one_in(&dir.display().to_string(), e.to_string()))?;
        }
        let set = CompiledSet::compile(PolicySource::from_dir(dir)?)?;
        Ok(PolicyAdmin::new(set, Home::Dir(dir.to_owned()), 0))
    }

    pub fn pdp(&self) -> &Arc<Pdp> {
        &self.pdp
    }

    /// Where the policies live, for the operator: the directory, `store` or `memory`.
    pub fn home(&self) -> String {
        match &self.home {
            Home::Memory => "memory".to_owned(),
            Home::Dir(dir) => dir.display().to_string(),
            Home::Store(_) => "store".to_owned(),
        }
    }

    /// The version of the running set when the store keeps it (each put is the next).
    pub fn version(&self) -> Option<u64> {
        matches!(self.home, Home::Store(_)).then(|| self.version.load(Ordering::Acquire))
    }

    /// Re-reads the directory, or the store's newest version; swaps in the set if it
    /// compiles and differs. Returns whether the running set changed.
    pub async fn reload(&self) -> Result<bool, CoreError> {
        let _guard = self.writing.lock().await;
        match &self.home {
            Home::Memory => Ok(false),
            Home::Dir(dir) => {
                let source = PolicySource::from_dir(dir)?;
                if source == *self.pdp.current().source() {
                    return Ok(false);
                }
                self.pdp.replace(source)?;
                Ok(true)
            }
            Home::Store(store) => {
                let newest = store.policy_set_version().await?;
                if newest <= self.version.load(Ordering::Acquire) {
                    return Ok(false);
                }
                let Some(stored) = store.latest_policy_set().await? else {
                    return Ok(false);
                };
                // Remember the version even if it fails, so a bad stored set is
                // reported once, not every second.
                self.version.store(stored.version, Ordering::Release);
                self.pdp.install(compile_stored(&stored.source)?);
                Ok(true)
            }
        }
    }

    /// Polls the directory every `every` and reloads on change, until the task is
    /// dropped. Failures are logged with every problem; the running set stays.
    pub async fn watch(self, every: Duration) {
        let mut last_error = None;
        loop {
            tokio::time::sleep(every).await;
            match self.reload().await {
                Ok(true) => {
                    last_error = None;
                    let set = self.pdp.current();
                    tracing::info!(
                        digest = set.digest(),
                        operator_policies = set.operator_policy_count(),
                        "policy set reloaded"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_ref() != Some(&text) {
                        tracing::error!(problems = %text, "policy set refused; the running set stays");
                        last_error = Some(text);
                    }
                }
            }
        }
    }

    /// Writes a compiled set's files into the directory: each written to a temporary
    /// name and renamed, then files the set no longer has removed.
    fn write_dir(dir: &Path, source: &PolicySource) -> std::io::Result<()> {
        let files: Vec<_> = source
            .policies
            .iter()
            .chain(&source.schemas)
            .chain(source.entities.as_ref())
            .collect();
        for file in &files {
            let tmp = dir.join(format!(".{}.tmp", file.name));
            std::fs::write(&tmp, file.text.as_bytes())?;
            std::fs::rename(&tmp, dir.join(&file.name))?;
        }
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let ours = name.ends_with(".cedar")
                || name.ends_with(".cedarschema")
                || name == "entities.json";
            if ours && !name.starts_with('.') && !files.iter().any(|f| f.name == name) {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}

impl Service {
    /// The running policy set.
    pub fn policy_summary(&self, caller: &Principal) -> Result<PolicySummary, CoreError> {
        self.require_admin(caller)?;
        Ok(PolicySummary::of(&self.policies.pdp.current()))
    }

    /// The running set's operator files.
    pub fn policy_source(&self, caller: &Principal) -> Result<PolicySource, CoreError> {
        self.require_admin(caller)?;
        Ok(self.policies.pdp.current().source().clone())
    }

    /// The set an AuthZEN caller (a policy enforcement point, with an admin token)
    /// decides with; held for one request.
    pub fn authzen_set(&self, caller: &Principal) -> Result<Arc<CompiledSet>, CoreError> {
        self.require_admin(caller)?;
        Ok(self.policies.pdp.current())
    }

    /// Compiles a set without installing it.
    pub fn validate_policies(
        &self,
        caller: &Principal,
        source: PolicySource,
    ) -> Result<PolicySummary, CoreError> {
        self.require_admin(caller)?;
        Ok(PolicySummary::of(&CompiledSet::compile(source)?))
    }

    /// Replaces the operator's set, whole, if it compiles; persisted to the policy
    /// directory first when there is one.
    pub async fn put_policies(
        &self,
        caller: &Principal,
        source: PolicySource,
    ) -> Result<PolicySummary, CoreError> {
        let tenant = self.require_admin(caller)?;
        let admin = &self.policies;
        let _guard = admin.writing.lock().await;
        let set = CompiledSet::compile(source)?;
        let actor = actor_of(caller);
        let mut version = None;
        match &admin.home {
            Home::Memory => {}
            Home::Dir(dir) => PolicyAdmin::write_dir(dir, set.source())
                .map_err(|e| CoreError::Unavailable(format!("policy directory: {e}")))?,
            Home::Store(store) => {
                let text = serde_json::to_string(set.source())
                    .map_err(|e| CoreError::Internal(e.to_string()))?;
                let now = self.clock.now();
                let mut attempt = 0;
                let stored = loop {
                    match store.put_policy_set(set.digest(), &text, &actor, now).await {
                        Err(StoreError::Conflict { .. }) if attempt < 5 => attempt += 1,
                        other => break other?,
                    }
                };
                admin.version.store(stored, Ordering::Release);
                version = Some(stored);
            }
        }
        let summary = PolicySummary::of(&set);
        admin.pdp.install(set);
        let mut event = NewEvent::new(tenant, EventKind::PolicyChanged, actor);
        event
            .data
            .insert("digest".into(), summary.digest.clone().into());
        event
            .data
            .insert("operator_policies".into(), summary.operator_policies.into());
        if let Some(version) = version {
            event.data.insert("version".into(), version.into());
        }
        self.store.append_events(&[event], self.clock.now()).await?;
        tracing::info!(digest = %summary.digest, "policy set replaced through the API");
        Ok(summary)
    }
}

fn compile_stored(text: &str) -> Result<CompiledSet, CoreError> {
    let source: PolicySource = serde_json::from_str(text)
        .map_err(|e| CoreError::Internal(format!("stored policy set does not decode: {e}")))?;
    Ok(CompiledSet::compile(source)?)
}

fn actor_of(caller: &Principal) -> String {
    match caller {
        Principal::Admin { .. } => "admin".to_owned(),
        Principal::Human { id, .. } => format!("human:{id}"),
        Principal::Agent { id, .. } => format!("agent:{id}"),
    }
}
