//! Task tokens whose signature and claims this replica already checked, or that it
//! issued itself, by the SHA-256 of their exact text, until they expire: a token
//! presented on every call is verified once, and one this replica issued is never
//! verified here (its first call, its exchange for a narrower token).
//!
//! Only what cannot change is remembered (the signed claims, checked once). Every use
//! still checks the audience it is presented to, its expiry against the clock, the
//! revocation list and, for a bound token, a fresh DPoP proof.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use mandate_token::{ClientKeys, TaskToken};
use mandate_types::AgentId;
use serde_json::Value;

use super::Presented;

/// Tokens remembered per generation. The memory holds two generations: when the newer
/// is full it becomes the older and the older is dropped, so at most twice this many
/// tokens are held (a kilobyte or a few each), making room costs no scan, and a token
/// still in use is moved back into the newer generation the first time it is presented
/// from the older one. One dropped is verified again once, the next time it is presented.
const GENERATION: usize = 4_096;

/// Tokens by the SHA-256 of their exact text: a 32-byte key instead of a copy of a
/// kilobyte of text per token (an equal digest of different texts is a SHA-256
/// collision).
#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    tokens: RwLock<Generations>,
}

type Generation = HashMap<[u8; 32], Arc<TaskToken>>;

#[derive(Debug, Default)]
struct Generations {
    newer: Generation,
    older: Generation,
}

impl Generations {
    /// Inserts into the newer generation; when it is full, it first becomes the older,
    /// and what was older is returned, to be dropped once the lock is released.
    #[must_use]
    fn insert(&mut self, key: [u8; 32], token: Arc<TaskToken>) -> Generation {
        let dropped = if self.newer.len() >= GENERATION {
            let full = std::mem::replace(&mut self.newer, HashMap::with_capacity(GENERATION));
            std::mem::replace(&mut self.older, full)
        } else {
            Generation::new()
        };
        self.older.remove(&key);
        self.newer.insert(key, token);
        dropped
    }
}

fn key(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

impl VerifiedTokens {
    /// The token as verified before, if it still holds for this presentation: same
    /// text, an audience it names, not expired (our own `exp`, no skew).
    pub(crate) fn get(&self, presented: &Presented<'_>, now: i64) -> Option<Arc<TaskToken>> {
        self.unexpired(presented.token, now)
            .filter(|token| token.audience.iter().any(|a| a == presented.audience))
    }

    /// The token as verified (or issued) before, if it has not expired: for a token
    /// presented where no audience applies (a subject token at the token endpoint).
    pub(crate) fn unexpired(&self, text: &str, now: i64) -> Option<Arc<TaskToken>> {
        let key = key(text);
        let (token, older) = {
            let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
            match tokens.newer.get(&key) {
                Some(token) => (token.clone(), false),
                None => (tokens.older.get(&key)?.clone(), true),
            }
        };
        if now >= token.expires_at {
            return None;
        }
        if older {
            // Still in use: kept through the next turn of the generations.
            let dropped = self
                .tokens
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, token.clone());
            drop(dropped);
        }
        Some(token)
    }

    /// Remembers a token that passed every check, or that this replica just signed
    /// (its claims are what verifying its text yields).
    pub(crate) fn put(&self, text: &str, token: Arc<TaskToken>) {
        let key = key(text);
        let dropped = self
            .tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, token);
        drop(dropped);
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        tokens.newer.len() + tokens.older.len()
    }
}

/// Agents kept at most in [`ClientKeyCache`]; past this it is emptied.
const MAX_CLIENTS: usize = 16_384;

/// Each agent's registered public keys, parsed once (parsing an Ed25519 key checks
/// that it is a point of the curve, which costs more than verifying a signature).
/// Keyed by agent and checked against the JWKs the agent holds now: a key registered
/// or removed since is seen at once, since the entry no longer matches and is parsed
/// again.
#[derive(Debug, Default)]
pub(crate) struct ClientKeyCache {
    clients: RwLock<HashMap<AgentId, Parsed>>,
}

/// The JWKs as registered, and what they parsed to.
type Parsed = (Vec<Value>, Arc<ClientKeys>);

impl ClientKeyCache {
    pub(crate) fn keys(&self, agent: AgentId, jwks: &[Value]) -> Arc<ClientKeys> {
        if let Some((source, keys)) = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&agent)
            && source.as_slice() == jwks
        {
            return keys.clone();
        }
        let keys = Arc::new(ClientKeys::parse(jwks));
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(agent, (jwks.to_vec(), keys.clone()));
        keys
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use mandate_jose::{Alg, SigningKey};

    use super::*;

    fn token(expires_at: i64) -> Arc<TaskToken> {
        Arc::new(TaskToken {
            issuer: "https://mandate.test".into(),
            jti: "j".into(),
            tenant: mandate_types::TenantId::generate(),
            subject: "alice".into(),
            actors: vec![AgentId::generate()],
            audience: vec!["https://mandate.test/mcp".into()],
            issued_at: 0,
            expires_at,
            scope: vec!["bank.get_balance".into()],
            mandate: None,
            authorization_details: None,
            cnf_jkt: None,
        })
    }

    #[test]
    fn tokens_in_use_stay_remembered_and_the_memory_is_bounded() {
        let memory = VerifiedTokens::default();
        memory.put("in use", token(100));
        memory.put("unused", token(100));
        memory.put("expired", token(10));
        assert!(
            memory.unexpired("expired", 10).is_none(),
            "expired at its exp"
        );
        assert!(memory.unexpired("never seen", 10).is_none());
        for round in 0..5 {
            for i in 0..GENERATION {
                memory.put(&format!("{round}-{i}"), token(100));
            }
            assert!(
                memory.held() <= 2 * GENERATION,
                "{} tokens held",
                memory.held()
            );
            assert!(
                memory.unexpired("in use", 50).is_some(),
                "a token presented every generation was forgotten in round {round}"
            );
        }
        assert!(
            memory.unexpired("unused", 50).is_none(),
            "a token nobody presents is dropped after two generations"
        );
        assert!(memory.unexpired("4-0", 50).is_some());
    }

    #[test]
    fn client_keys_follow_the_agents_registered_jwks() {
        let cache = ClientKeyCache::default();
        let agent = AgentId::generate();
        let one = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
        let two = SigningKey::generate(Alg::EdDSA, "k2".into()).unwrap();
        let jwks = vec![one.public_jwk().to_public_json()];
        let first = cache.keys(agent, &jwks);
        assert!(
            Arc::ptr_eq(&first, &cache.keys(agent, &jwks)),
            "parsed once"
        );
        let sign = |key: &SigningKey| {
            let claims = serde_json::json!({
                "iss": agent.to_string(), "sub": agent.to_string(), "aud": "aud",
                "iat": 100, "exp": 160, "jti": "j",
            });
            key.sign(
                serde_json::Map::new(),
                &serde_json::to_vec(&claims).unwrap(),
            )
            .unwrap()
        };
        let check = |keys: &ClientKeys, token: &str| {
            mandate_token::verify_client_assertion(token, &agent.to_string(), keys, &["aud"], 120)
                .is_ok()
        };
        assert!(check(&first, &sign(&one)));
        assert!(!check(&first, &sign(&two)));
        // The agent's keys were replaced: the old key no longer verifies, the new one does.
        let rotated = cache.keys(agent, &[two.public_jwk().to_public_json()]);
        assert!(!check(&rotated, &sign(&one)));
        assert!(check(&rotated, &sign(&two)));
    }
}
