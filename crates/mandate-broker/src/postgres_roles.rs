//! Dynamic credentials on PostgreSQL: a login role per mandate, valid until the
//! mandate's expiry, dropped when the mandate ends.
//!
//! ```text
//!   mandate active ──► create_for_mandate(id, expiry, member_of)
//!                        CREATE ROLE "mandate_<id>_<hash>" LOGIN PASSWORD '<SCRAM verifier>'
//!                               VALID UNTIL '<expiry>' IN ROLE "<member_of>", …
//!                      (again: ALTER ROLE … new password, new expiry; GRANT memberships)
//!   mandate ends   ──► drop_for_mandate(id)
//!                        ALTER ROLE … NOLOGIN   (no new sessions)
//!                        pg_terminate_backend(every session of the role, wait ≤ 5 s)
//!                        REASSIGN OWNED / DROP OWNED (this database), DROP ROLE IF EXISTS
//! ```
//!
//! Utility statements take no bind parameters, so names and literals are spliced into
//! the SQL text — but only ever names built by [`PostgresRoles::role_name`] (characters
//! `[a-z0-9_]` only) and configured role names, all quoted as identifiers, and literals
//! we produce ourselves (a SCRAM verifier, a timestamp). A mandate id never reaches the
//! SQL text except through that sanitised, hashed name.
//!
//! The password is sent as a SCRAM-SHA-256 verifier computed here, so the plaintext
//! never reaches the server, even when it logs DDL statements (`log_statement = ddl`).
//!
//! The admin connection needs `CREATEROLE`, membership in `pg_signal_backend` (or
//! superuser) and, with `CREATEROLE` alone on PostgreSQL 16+, `ADMIN OPTION` on the
//! roles granted. `pg_terminate_backend` with a timeout needs PostgreSQL 14+.

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};
use mandate_types::Secret;
use ring::rand::{SecureRandom as _, SystemRandom};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// PostgreSQL's longest identifier (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;
/// Longest role-name prefix, so prefix + id part + hash fit in [`MAX_IDENT`].
const MAX_PREFIX: usize = 10;
/// Characters of the sanitised mandate id kept in a role name.
const ID_PART: usize = 36;
/// Hex digits of SHA-256(mandate id) that make every role name unique to its mandate.
const HASH_PART: usize = 16;
/// PBKDF2 iterations of the SCRAM verifier (PostgreSQL's own default).
const SCRAM_ITERATIONS: u32 = 4096;
/// Longest wait for a terminated session to go away, in milliseconds.
const TERMINATE_WAIT_MS: i64 = 5000;

/// Why a dynamic credential could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum DynamicError {
    #[error(
        "the role prefix must be 1 to {MAX_PREFIX} characters of a-z 0-9 _, starting with a letter"
    )]
    BadPrefix,
    #[error("the mandate id is empty")]
    EmptyMandateId,
    #[error("`{0}` is not a role name PostgreSQL accepts (1 to 63 bytes, no NUL)")]
    BadRoleName(String),
    #[error("internal error: a generated SQL literal holds a backslash or NUL")]
    BadLiteral,
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("PostgreSQL refused to {action} role `{role}`: {source}")]
    Database {
        action: &'static str,
        role: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the system random number generator failed")]
    Random,
}

/// What [`PostgresRoles`] creates roles with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleOptions {
    /// Every role name starts with this (default `mandate_`): 1 to 10 of `[a-z0-9_]`.
    pub prefix: String,
    /// `CONNECTION LIMIT` of each role (default 5; `None`: unlimited).
    pub connection_limit: Option<u32>,
}

impl Default for RoleOptions {
    fn default() -> Self {
        Self {
            prefix: "mandate_".into(),
            connection_limit: Some(5),
        }
    }
}

/// A login made for one mandate. The password is shown to no log and no response.
#[derive(Debug, Clone)]
pub struct DynamicCredential {
    pub username: String,
    pub password: Secret<String>,
    pub valid_until: DateTime<Utc>,
}

/// Creates and drops per-mandate roles through an admin connection pool.
#[derive(Debug, Clone)]
pub struct PostgresRoles {
    pool: PgPool,
    options: RoleOptions,
}

impl PostgresRoles {
    /// Over an existing admin pool.
    pub fn new(pool: PgPool, options: RoleOptions) -> Result<Self, DynamicError> {
        let p = options.prefix.as_bytes();
        let valid = (1..=MAX_PREFIX).contains(&p.len())
            && p.first().is_some_and(u8::is_ascii_lowercase)
            && p.iter().all(|&b| is_name_byte(b));
        if !valid {
            return Err(DynamicError::BadPrefix);
        }
        Ok(Self { pool, options })
    }

    /// Connects an admin pool of two connections to `url`.
    pub async fn connect(url: &str, options: RoleOptions) -> Result<Self, DynamicError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .map_err(DynamicError::Connect)?;
        Self::new(pool, options)
    }

    /// The role name of a mandate: prefix, the id lowercased with every character
    /// outside `[a-z0-9_]` replaced by `_` (at most 36), `_`, and 16 hex digits of the
    /// id's SHA-256 — so two ids never share a role, however alike they sanitise.
    pub fn role_name(&self, mandate_id: &str) -> Result<String, DynamicError> {
        if mandate_id.is_empty() {
            return Err(DynamicError::EmptyMandateId);
        }
        let readable: String = mandate_id
            .chars()
            .take(ID_PART)
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii() && is_name_byte(c as u8) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, mandate_id.as_bytes());
        let hash: String = digest
            .as_ref()
            .iter()
            .take(HASH_PART / 2)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(format!("{}{readable}_{hash}", self.options.prefix))
    }

    /// Creates the mandate's login role, valid until `valid_until`, member of
    /// `member_of`; returns its fresh password. Calling again for the same mandate
    /// rotates the password, moves the expiry and adds any new memberships (existing
    /// memberships are kept): the latest credential is the one that works. An expiry
    /// already past makes a role that cannot log in.
    pub async fn create_for_mandate(
        &self,
        mandate_id: &str,
        valid_until: DateTime<Utc>,
        member_of: &[String],
    ) -> Result<DynamicCredential, DynamicError> {
        let role = self.role_name(mandate_id)?;
        let groups = member_of
            .iter()
            .map(|g| quote_ident(g))
            .collect::<Result<Vec<_>, _>>()?;
        let password = random_password()?;
        let verifier = scram_verifier(password.expose())?;
        let until = valid_until.to_rfc3339_opts(SecondsFormat::Micros, true);
        let limit = self
            .options
            .connection_limit
            .map_or_else(|| "-1".to_owned(), |n| n.to_string());
        let ident = quote_ident(&role)?;
        let attributes = format!(
            "LOGIN PASSWORD {} VALID UNTIL {} CONNECTION LIMIT {limit}",
            quote_literal(verifier.expose())?,
            quote_literal(&until)?,
        );
        let db_error = |action| {
            let role = role.clone();
            move |source| DynamicError::Database {
                action,
                role,
                source,
            }
        };

        // `query` (not `raw_sql`) for the statements built below: `raw_sql`'s futures are
        // not `Send` for every lifetime, which callers behind trait objects need.
        let mut tx = self.pool.begin().await.map_err(db_error("create"))?;
        // Serialise concurrent calls for one mandate (two replicas, a retry) so the
        // existence check below holds until commit.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&role)
            .execute(&mut *tx)
            .await
            .map_err(db_error("lock"))?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&role)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error("look up"))?;
        if exists {
            sqlx::query(&format!("ALTER ROLE {ident} WITH {attributes}"))
                .execute(&mut *tx)
                .await
                .map_err(db_error("alter"))?;
            if !groups.is_empty() {
                sqlx::query(&format!("GRANT {} TO {ident}", groups.join(", ")))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("grant memberships to"))?;
            }
        } else {
            let in_role = if groups.is_empty() {
                String::new()
            } else {
                format!(" IN ROLE {}", groups.join(", "))
            };
            sqlx::query(&format!("CREATE ROLE {ident} WITH {attributes}{in_role}"))
                .execute(&mut *tx)
                .await
                .map_err(db_error("create"))?;
        }
        tx.commit().await.map_err(db_error("commit"))?;
        Ok(DynamicCredential {
            username: role,
            password,
            valid_until,
        })
    }

    /// Ends the mandate's role: no new logins, every open session terminated, what it
    /// owns in this database reassigned to the admin, then dropped. `false` when there
    /// was no such role (already dropped, or never created).
    pub async fn drop_for_mandate(&self, mandate_id: &str) -> Result<bool, DynamicError> {
        let role = self.role_name(mandate_id)?;
        let ident = quote_ident(&role)?;
        let db_error = |action| {
            let role = role.clone();
            move |source| DynamicError::Database {
                action,
                role,
                source,
            }
        };
        let mut conn = self.pool.acquire().await.map_err(db_error("drop"))?;
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
            .bind(&role)
            .execute(&mut *conn)
            .await
            .map_err(db_error("lock"))?;
        let result = async {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                    .bind(&role)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db_error("look up"))?;
            if !exists {
                return Ok(false);
            }
            // First no new sessions, then end the open ones: a session cannot slip in
            // between.
            sqlx::query(&format!("ALTER ROLE {ident} WITH NOLOGIN"))
                .execute(&mut *conn)
                .await
                .map_err(db_error("disable"))?;
            sqlx::query(
                "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity
                 WHERE usename = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&role)
            .bind(TERMINATE_WAIT_MS)
            .execute(&mut *conn)
            .await
            .map_err(db_error("terminate the sessions of"))?;
            for statement in [
                format!("REASSIGN OWNED BY {ident} TO CURRENT_USER"),
                format!("DROP OWNED BY {ident}"),
                format!("DROP ROLE IF EXISTS {ident}"),
            ] {
                sqlx::query(&statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error("drop"))?;
            }
            Ok(true)
        }
        .await;
        // Session-level lock: released even when dropping failed.
        let unlock = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(&role)
            .execute(&mut *conn)
            .await;
        if unlock.is_err() {
            // A connection that cannot unlock must not go back to the pool holding it.
            drop(conn.detach());
        }
        result
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// `name` as a quoted SQL identifier (`"` doubled). Refuses what PostgreSQL would
/// truncate or reject, so the name used is the name given.
fn quote_ident(name: &str) -> Result<String, DynamicError> {
    if name.is_empty() || name.len() > MAX_IDENT || name.contains('\0') {
        return Err(DynamicError::BadRoleName(name.chars().take(80).collect()));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `value` as a SQL string literal (`'` doubled). Only used for values we made (a
/// verifier, a timestamp); a backslash or NUL is refused all the same, so the literal
/// means the same whatever `standard_conforming_strings` says.
fn quote_literal(value: &str) -> Result<String, DynamicError> {
    if value.contains(['\\', '\0']) {
        return Err(DynamicError::BadLiteral);
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// 32 random bytes as unpadded base64url (43 characters of `[A-Za-z0-9_-]`).
fn random_password() -> Result<Secret<String>, DynamicError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DynamicError::Random)?;
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(bytes)))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802 / RFC 7677):
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. The password is ASCII,
/// so SASLprep leaves it unchanged.
fn scram_verifier(password: &str) -> Result<Secret<String>, DynamicError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| DynamicError::Random)?;
    let iterations = NonZeroU32::new(SCRAM_ITERATIONS).ok_or(DynamicError::Random)?;
    Ok(scram_verifier_with(password, &salt, iterations))
}

fn scram_verifier_with(password: &str, salt: &[u8], iterations: NonZeroU32) -> Secret<String> {
    let mut salted = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
    let client_key = ring::hmac::sign(&key, b"Client Key");
    let stored_key = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
    let server_key = ring::hmac::sign(&key, b"Server Key");
    Secret::new(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref()),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        reason = "a test fails loudly"
    )]

    use super::*;

    /// Our verifier equals the one PostgreSQL computes for the same password and salt
    /// (the local server's trust authentication cannot check a password at login).
    #[tokio::test]
    async fn scram_verifier_matches_postgresql() {
        let url = std::env::var("MANDATE_TEST_POSTGRES_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        let role = format!("mt_scram_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(&format!(
            "SET LOCAL password_encryption = 'scram-sha-256';
             CREATE ROLE {role} PASSWORD 'pässword with '' quote'"
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
        let stored: String =
            sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
                .bind(&role)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        // Rolled back: the role never exists outside this transaction.
        tx.rollback().await.unwrap();
        let (head, _) = stored.split_once('$').unwrap().1.split_once('$').unwrap();
        let (iterations, salt) = head.split_once(':').unwrap();
        let ours = scram_verifier_with(
            "pässword with ' quote",
            &STANDARD.decode(salt).unwrap(),
            iterations.parse().unwrap(),
        );
        // Non-ASCII passwords go through SASLprep, which leaves this one unchanged.
        assert_eq!(ours.expose(), &stored);
        let ascii = scram_verifier("abc").unwrap();
        assert!(ascii.expose().starts_with("SCRAM-SHA-256$4096:"));
    }

    #[tokio::test]
    async fn role_names_are_safe_and_unique_per_mandate() {
        let roles = PostgresRoles {
            pool: PgPoolOptions::new()
                .connect_lazy("postgres://localhost/x")
                .unwrap(),
            options: RoleOptions::default(),
        };
        let normal = roles
            .role_name("man_0193b5a0c7e07c10a4e3d1f2a9b8c7d6")
            .unwrap();
        assert!(normal.starts_with("mandate_man_0193b5a0c7e07c10a4e3d1f2a9b8c7d6_"));
        assert_eq!(normal.len(), 8 + 36 + 1 + 16);
        for hostile in [
            "x\"; DROP ROLE postgres; --",
            "x'; DROP ROLE postgres; --",
            "MAN_ABC",
            "man abc",
            "man_abc\0",
            &"a".repeat(500),
            "ü",
        ] {
            let name = roles.role_name(hostile).unwrap();
            assert!(name.len() <= MAX_IDENT, "{name}");
            assert!(name.bytes().all(is_name_byte), "{name}");
        }
        // Ids that sanitise alike still get their own roles.
        assert_ne!(
            roles.role_name("man-abc").unwrap(),
            roles.role_name("man_abc").unwrap()
        );
        assert_ne!(
            roles.role_name("MAN_ABC").unwrap(),
            roles.role_name("man_abc").unwrap()
        );
        assert!(matches!(
            roles.role_name(""),
            Err(DynamicError::EmptyMandateId)
        ));

        for prefix in ["", "Mandate_", "1x_", "x\"", "abcdefghijk"] {
            let options = RoleOptions {
                prefix: prefix.into(),
                connection_limit: None,
            };
            assert!(
                matches!(
                    PostgresRoles::new(roles.pool.clone(), options),
                    Err(DynamicError::BadPrefix)
                ),
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(quote_ident("").is_err());
        assert!(quote_ident(&"a".repeat(64)).is_err());
        assert!(quote_ident("a\0b").is_err());
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert!(quote_literal("a\\b").is_err());
    }
}
