//! Task tokens whose signature and claims this replica already checked, by their exact
//! text, until they expire: a token presented on every call is verified once.
//!
//! Only what cannot change is remembered (the signed claims, checked once). Every use
//! still checks the audience it is presented to, its expiry against the clock, the
//! revocation list and, for a bound token, a fresh DPoP proof.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use mandate_token::TaskToken;

use super::Presented;

/// Tokens kept at most; past this the map is emptied (each is verified again once).
const MAX_TOKENS: usize = 50_000;

#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    tokens: RwLock<HashMap<Box<str>, Arc<TaskToken>>>,
}

impl VerifiedTokens {
    /// The token as verified before, if it still holds for this presentation: same
    /// text, an audience it names, not expired (with the same skew as a full check).
    pub(crate) fn get(
        &self,
        presented: &Presented<'_>,
        now: i64,
        skew: i64,
    ) -> Option<Arc<TaskToken>> {
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        let token = tokens.get(presented.token)?;
        let live = now < token.expires_at.saturating_add(skew);
        let for_here = token.audience.iter().any(|a| a == presented.audience);
        (live && for_here).then(|| token.clone())
    }

    /// Remembers a token that passed every check; drops expired ones when full.
    pub(crate) fn put(&self, text: &str, token: Arc<TaskToken>, now: i64) {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, t| now < t.expires_at);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(text.into(), token);
    }
}
