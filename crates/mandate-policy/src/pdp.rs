//! The running policy set, swapped whole and atomically.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::compile::CompiledSet;
use crate::source::{PolicySetError, PolicySource};

/// Holds the compiled set every decision reads. A reload compiles the new source
/// beside the running set; only a set that compiled replaces it, in one pointer swap,
/// so a decision sees the old set or the new one, never a mixture.
#[derive(Debug)]
pub struct Pdp {
    current: ArcSwap<CompiledSet>,
}

impl Pdp {
    pub fn new(set: CompiledSet) -> Self {
        Pdp {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// The set to decide with; hold it for one request (or one batch) at most.
    pub fn current(&self) -> Arc<CompiledSet> {
        self.current.load_full()
    }

    /// Makes an already compiled set current.
    pub fn install(&self, set: CompiledSet) {
        self.current.store(Arc::new(set));
    }

    /// Compiles `source` and, if it compiles, makes it current. Returns the new set.
    pub fn replace(&self, source: PolicySource) -> Result<Arc<CompiledSet>, PolicySetError> {
        let set = Arc::new(CompiledSet::compile(source)?);
        self.current.store(set.clone());
        Ok(set)
    }
}
