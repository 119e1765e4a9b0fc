//! Operator policies as code: a directory of `.cedar` files (with `.cedarschema`
//! fragments and `entities.json`), hot-reloaded, and the `/v1/policies` use cases.
//!
//! The directory is the source of truth. A set put through the API is compiled first
//! and, only if it compiles, written into the directory (each file atomically, stale
//! files removed) and swapped in. A watcher reloads the directory when its contents
//! change; a set that fails to compile is logged with every problem and never replaces
//! the running one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mandate_domain::Principal;
use mandate_policy::{CompiledSet, Pdp, PolicyInfo, PolicySetError, PolicySource};
use serde::Serialize;
use tokio::sync::Mutex;
use utoipa::ToSchema;

use crate::Service;
use crate::error::CoreError;

/// The running policy set and where it comes from.
#[derive(Debug, Clone)]
pub struct PolicyAdmin {
    pdp: Arc<Pdp>,
    dir: Option<PathBuf>,
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
        PolicyAdmin {
            pdp: Arc::new(Pdp::new(set)),
            dir: None,
            writing: Arc::new(Mutex::new(())),
        }
    }

    /// Loads `dir` (created when missing). A set that does not compile is an error:
    /// starting without the operator's forbids would allow what they deny.
    pub fn from_dir(dir: &Path) -> Result<Self, PolicySetError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| PolicySetError::one_in(&dir.display().to_string(), e.to_string()))?;
        }
        let set = CompiledSet::compile(PolicySource::from_dir(dir)?)?;
        Ok(PolicyAdmin {
            pdp: Arc::new(Pdp::new(set)),
            dir: Some(dir.to_owned()),
            writing: Arc::new(Mutex::new(())),
        })
    }

    pub fn pdp(&self) -> &Arc<Pdp> {
        &self.pdp
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Re-reads the directory; swaps in the set if it compiles and differs. Returns
    /// whether the running set changed.
    pub async fn reload(&self) -> Result<bool, PolicySetError> {
        let Some(dir) = &self.dir else {
            return Ok(false);
        };
        let _guard = self.writing.lock().await;
        let source = PolicySource::from_dir(dir)?;
        if source == *self.pdp.current().source() {
            return Ok(false);
        }
        self.pdp.replace(source)?;
        Ok(true)
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
        self.require_admin(caller)?;
        let admin = &self.policies;
        let _guard = admin.writing.lock().await;
        let set = CompiledSet::compile(source)?;
        if let Some(dir) = &admin.dir {
            PolicyAdmin::write_dir(dir, set.source())
                .map_err(|e| CoreError::Unavailable(format!("policy directory: {e}")))?;
        }
        let summary = PolicySummary::of(&set);
        admin.pdp.install(set);
        tracing::info!(digest = %summary.digest, "policy set replaced through the API");
        Ok(summary)
    }
}
