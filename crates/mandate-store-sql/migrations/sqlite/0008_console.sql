-- The console: local sign-in accounts (an Argon2id hash, never the password) and
-- browser sessions (the SHA-256 of the cookie, never the cookie).
CREATE TABLE console_accounts (
    human_id         TEXT PRIMARY KEY REFERENCES humans (id),
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    login            TEXT NOT NULL UNIQUE,
    password_hash    TEXT NOT NULL,
    failed_attempts  BIGINT NOT NULL DEFAULT 0,
    locked_until     BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE TABLE console_sessions (
    id_hash     TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    human_id    TEXT NOT NULL REFERENCES humans (id),
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_human ON console_sessions (human_id);
