//! Legacy (2025-06-18, 2025-11-25) sessions: an id minted by `initialize`, ended by DELETE.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use rand::Rng;

/// The sessions of one server. Bounded: `initialize` is refused when full.
#[derive(Debug)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<String, &'static str>>,
    max: usize,
}

/// Why a session id was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Found(&'static str),
    /// Never issued, or terminated.
    Unknown,
}

impl Sessions {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Opens a session at the negotiated `version`; `None` when the table is full.
    pub(crate) fn open(&self, version: &'static str) -> Option<String> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.len() >= self.max {
            return None;
        }
        let id = new_id();
        live.insert(id.clone(), version);
        Some(id)
    }

    pub(crate) fn lookup(&self, id: &str) -> Lookup {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.get(id)
            .map_or(Lookup::Unknown, |version| Lookup::Found(version))
    }

    /// Ends a session; `false` when it was not live.
    pub(crate) fn terminate(&self, id: &str) -> bool {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.remove(id).is_some()
    }
}

/// 256 random bits as lowercase hex: visible ASCII, as the spec requires, and unguessable.
fn new_id() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let sessions = Sessions::new(2);
        let id = sessions.open("2025-11-25").unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(sessions.lookup(&id), Lookup::Found("2025-11-25"));
        assert!(sessions.terminate(&id));
        assert_eq!(sessions.lookup(&id), Lookup::Unknown);
        assert!(!sessions.terminate(&id));
        sessions.open("2025-06-18").unwrap();
        sessions.open("2025-06-18").unwrap();
        assert_eq!(sessions.open("2025-06-18"), None);
    }
}
