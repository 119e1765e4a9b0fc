//! Console sign-in: local accounts (Argon2id) and browser sessions.
//!
//! ```text
//!   set_password ──► Argon2id PHC string ──► store (never the password)
//!   sign_in ──► lock? ──► verify (also for unknown names: same cost, same answer)
//!            └─► session: random cookie value ──► store keeps its SHA-256 + a CSRF token
//! ```
//!
//! Every refusal of `sign_in` is the same [`CoreError::Unauthenticated`]: a wrong
//! password, an unknown name and a locked account look alike from outside.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use mandate_domain::{Human, Principal, canonical};
use mandate_store::{Account, ConsoleSession, StoreError};
use mandate_types::{HumanId, Secret};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::{CoreError, Service};

/// Consecutive failures that lock an account.
pub const LOCK_AFTER_FAILURES: u32 = 5;
/// How long a locked account stays locked.
pub const LOCK_MINUTES: i64 = 15;
/// How long a console session lasts, whatever its use.
pub const SESSION_HOURS: i64 = 12;
/// Humans in this group administer their tenant in the console.
pub const ADMIN_GROUP: &str = "mandate-admins";
const MIN_PASSWORD_CHARS: usize = 10;
const MAX_PASSWORD_BYTES: usize = 1024;
const SESSION_PREFIX: &str = "mds_";

/// A signed-in browser: who, and the token its forms must carry.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub human: Human,
    pub csrf: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl SignedIn {
    /// The human, as the use cases know callers.
    pub fn principal(&self) -> Principal {
        Principal::Human {
            tenant: self.human.tenant_id,
            id: self.human.id,
        }
    }

    /// The tenant's administrator, when this human is one ([`ADMIN_GROUP`]).
    pub fn admin(&self) -> Option<Principal> {
        self.human
            .groups
            .iter()
            .any(|g| g == ADMIN_GROUP)
            .then_some(Principal::Admin {
                tenant: self.human.tenant_id,
            })
    }
}

/// OWASP's minimum for Argon2id: 19 MiB, two passes, one lane.
fn hasher() -> Result<Argon2<'static>, CoreError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| CoreError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_password(password: &str) -> Result<String, CoreError> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt =
        SaltString::encode_b64(&bytes).map_err(|e| CoreError::Internal(format!("salt: {e}")))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::Internal(format!("argon2: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    hasher().is_ok_and(|h| h.verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of nothing anyone knows, verified against when the name is unknown so that
/// the answer takes as long as for a real account.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        hash_password(&URL_SAFE_NO_PAD.encode(bytes)).unwrap_or_default()
    })
}

/// Argon2 is deliberately slow: off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CoreError::Internal(format!("password hashing task: {e}")))
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn session_hash(secret: &str) -> String {
    canonical::hex(&Sha256::digest(secret.as_bytes()))
}

fn check_password(password: &str) -> Result<(), CoreError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CoreError::invalid(format!(
            "`password` is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(CoreError::invalid(format!(
            "`password` must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "`password` must not contain control characters",
        ));
    }
    Ok(())
}

impl Service {
    /// Sets a human's console password: an admin of the tenant, or the human themself.
    /// Every session the human had ends.
    pub async fn set_password(
        &self,
        caller: &Principal,
        human: HumanId,
        password: Secret<String>,
    ) -> Result<(), CoreError> {
        let allowed = match caller {
            Principal::Admin { .. } => true,
            Principal::Human { id, .. } => *id == human,
            Principal::Agent { .. } => false,
        };
        let person = if allowed {
            self.store.human(caller.tenant(), human).await?
        } else {
            None
        };
        let person = person.ok_or_else(|| CoreError::not_found("human", human))?;
        check_password(password.expose())?;
        if password.expose().eq_ignore_ascii_case(&person.email) {
            return Err(CoreError::invalid(
                "`password` must not be the sign-in email",
            ));
        }
        let hash = blocking(move || hash_password(password.expose())).await??;
        let account = Account {
            tenant_id: person.tenant_id,
            human_id: person.id,
            login: person.email.to_ascii_lowercase(),
            password_hash: hash,
            failed_attempts: 0,
            locked_until: None,
            updated_at: self.clock.now(),
        };
        match self.store.put_account(&account).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(CoreError::Conflict(format!(
                    "another account already signs in as `{}`",
                    account.login
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let ended = self.store.delete_sessions_of(person.id).await?;
        tracing::info!(human = %person.id, by = %caller.label(), sessions_ended = ended, "console password set");
        Ok(())
    }

    /// Checks a sign-in and opens a session. Returns the cookie's value (shown once,
    /// stored only as a hash) and the session.
    pub async fn sign_in(
        &self,
        login: &str,
        password: Secret<String>,
    ) -> Result<(Secret<String>, SignedIn), CoreError> {
        let login = login.trim().to_ascii_lowercase();
        if login.len() > 254 || password.expose().len() > MAX_PASSWORD_BYTES {
            return Err(CoreError::Unauthenticated);
        }
        let account = self.store.account_by_login(&login).await?;
        let now = self.clock.now();
        let phc = account
            .as_ref()
            .map_or_else(|| decoy_hash().to_owned(), |a| a.password_hash.clone());
        let matches = blocking(move || verify_password(password.expose(), &phc)).await?;
        let Some(account) = account else {
            tracing::info!("console sign-in refused: unknown name");
            return Err(CoreError::Unauthenticated);
        };
        if account.locked_until.is_some_and(|until| now < until) {
            tracing::warn!(human = %account.human_id, "console sign-in refused: account locked");
            return Err(CoreError::Unauthenticated);
        }
        if !matches {
            let after = self
                .store
                .sign_in_failed(
                    account.human_id,
                    LOCK_AFTER_FAILURES,
                    now + Duration::minutes(LOCK_MINUTES),
                )
                .await?;
            let failures = after.map_or(0, |a| a.failed_attempts);
            tracing::warn!(human = %account.human_id, failures, "console sign-in refused: wrong password");
            return Err(CoreError::Unauthenticated);
        }
        let human = self
            .store
            .human(account.tenant_id, account.human_id)
            .await?
            .ok_or(CoreError::Unauthenticated)?;
        self.store.sign_in_succeeded(account.human_id).await?;
        let opened = self.open_session(human).await?;
        tracing::info!(human = %opened.1.human.id, "console sign-in");
        Ok(opened)
    }

    /// Opens a session for the human of tenant `tenant` (by name) whose email is
    /// `email` (compared case-insensitively), vouched for by an external identity
    /// provider the caller has already verified. Refused alike
    /// ([`CoreError::Unauthenticated`]) when there is no such human or the human's
    /// local account is locked. Never creates a human.
    pub async fn sign_in_external(
        &self,
        tenant: &str,
        email: &str,
        provider: &str,
    ) -> Result<(Secret<String>, SignedIn), CoreError> {
        let email = email.trim().to_ascii_lowercase();
        if email.is_empty() || email.len() > 254 {
            return Err(CoreError::Unauthenticated);
        }
        let Some(tenant) = self.store.tenant_by_name(tenant).await? else {
            tracing::warn!(
                provider,
                "external console sign-in refused: the configured tenant does not exist"
            );
            return Err(CoreError::Unauthenticated);
        };
        let filter = mandate_store::HumanFilter {
            email: Some(email.clone()),
            group: None,
        };
        // Emails are unique in a tenant (and stored lower-cased): one page of one.
        let page = mandate_store::PageRequest::new(None, Some(1))
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let found = self.store.list_humans(tenant.id, &filter, &page).await?;
        let Some(human) = found.items.into_iter().next() else {
            tracing::info!(
                provider,
                "external console sign-in refused: no human has this email"
            );
            return Err(CoreError::Unauthenticated);
        };
        if let Some(account) = self.store.account_by_login(&email).await?
            && account.human_id == human.id
            && account
                .locked_until
                .is_some_and(|until| self.clock.now() < until)
        {
            tracing::warn!(human = %human.id, provider, "external console sign-in refused: account locked");
            return Err(CoreError::Unauthenticated);
        }
        let opened = self.open_session(human).await?;
        tracing::info!(human = %opened.1.human.id, provider, "console sign-in");
        Ok(opened)
    }

    /// A new session for `human`: the cookie's value (shown once, stored as a hash).
    async fn open_session(&self, human: Human) -> Result<(Secret<String>, SignedIn), CoreError> {
        let now = self.clock.now();
        let secret = format!("{SESSION_PREFIX}{}", random_token());
        let session = ConsoleSession {
            id_hash: session_hash(&secret),
            tenant_id: human.tenant_id,
            human_id: human.id,
            csrf: random_token(),
            created_at: now,
            expires_at: now + Duration::hours(SESSION_HOURS),
        };
        self.store.create_session(&session).await?;
        Ok((
            Secret::new(secret),
            SignedIn {
                human,
                csrf: session.csrf,
                expires_at: session.expires_at,
            },
        ))
    }

    /// The session a cookie names, while it lasts.
    pub async fn console_session(&self, secret: &str) -> Result<Option<SignedIn>, CoreError> {
        if !secret.starts_with(SESSION_PREFIX) || secret.len() > 128 {
            return Ok(None);
        }
        let Some(session) = self
            .store
            .session(&session_hash(secret), self.clock.now())
            .await?
        else {
            return Ok(None);
        };
        let human = self
            .store
            .human(session.tenant_id, session.human_id)
            .await?;
        Ok(human.map(|human| SignedIn {
            human,
            csrf: session.csrf,
            expires_at: session.expires_at,
        }))
    }

    /// Ends the session a cookie names (nothing happens for an unknown one).
    pub async fn sign_out(&self, secret: &str) -> Result<(), CoreError> {
        if secret.starts_with(SESSION_PREFIX) && secret.len() <= 128 {
            self.store.delete_session(&session_hash(secret)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify_only_the_password() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
        assert!(!verify_password("", &phc));
        assert!(!verify_password("x", "not a phc string"));
        assert!(!verify_password("x", ""));
    }

    #[test]
    fn passwords_are_checked() {
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(2000)).is_err());
        assert!(check_password("ten chars\u{0}!").is_err());
        assert!(check_password("a long enough password").is_ok());
    }
}
