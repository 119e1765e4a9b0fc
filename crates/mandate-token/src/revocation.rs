//! The in-memory revocation list every replica checks tokens against.
//!
//! Fed by the store (`revoked_since`, driven by notifications and a poll) and by the
//! replica's own revocations. An entry is kept until no token it could match can
//! still be alive: revoked at `r`, a token lives at most `max_lifetime` past its
//! issue, which was before `r`, so `r + max_lifetime` (+ skew) is enough.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, Duration, Utc};

/// Revoked `jti`s, with the time each was revoked.
#[derive(Debug)]
pub struct RevocationList {
    inner: RwLock<Inner>,
    keep: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    revoked: HashMap<String, DateTime<Utc>>,
    /// The newest revocation time seen from the store: where the next catch-up starts.
    watermark: Option<DateTime<Utc>>,
}

impl RevocationList {
    /// `keep`: how long an entry must outlive its revocation (longest token lifetime
    /// plus clock skew).
    pub fn new(keep: Duration) -> RevocationList {
        RevocationList {
            inner: RwLock::new(Inner::default()),
            keep,
        }
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revoked
            .contains_key(jti)
    }

    /// Adds revocations (from the store or from this replica).
    pub fn add<'a>(&self, entries: impl IntoIterator<Item = (&'a str, DateTime<Utc>)>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for (jti, at) in entries {
            inner.revoked.insert(jti.to_owned(), at);
            if inner.watermark.is_none_or(|w| at > w) {
                inner.watermark = Some(at);
            }
        }
    }

    /// Where to resume reading the store from (`None`: from the start of the window).
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .watermark
    }

    /// Forgets entries no live token can match any more.
    pub fn purge(&self, now: DateTime<Utc>) {
        let keep = self.keep;
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.revoked.retain(|_, at| *at + keep > now);
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revoked
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_no_token_can_be_alive() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let list = RevocationList::new(Duration::seconds(360));
        list.add([("a", t0), ("b", t0 + Duration::seconds(100))]);
        assert!(list.is_revoked("a") && list.is_revoked("b") && !list.is_revoked("c"));
        assert_eq!(list.watermark(), Some(t0 + Duration::seconds(100)));
        list.purge(t0 + Duration::seconds(359));
        assert!(list.is_revoked("a"));
        list.purge(t0 + Duration::seconds(360));
        assert!(!list.is_revoked("a") && list.is_revoked("b"));
        list.add([("c", t0)]);
        assert_eq!(
            list.watermark(),
            Some(t0 + Duration::seconds(100)),
            "watermark never moves back"
        );
    }
}
