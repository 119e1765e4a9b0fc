-- Issued credentials. `parent_jti` chains delegation; revocation walks it downwards.
CREATE TABLE grants (
    jti         TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    mandate_id  TEXT,
    agent_id    TEXT NOT NULL,
    parent_jti  TEXT REFERENCES grants (jti),
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    doc         TEXT NOT NULL
);
CREATE INDEX grants_by_mandate ON grants (tenant_id, mandate_id);
CREATE INDEX grants_by_parent ON grants (parent_jti);
CREATE INDEX grants_by_revocation ON grants (revoked_at);

-- Client assertions (private_key_jwt, JWT-SVIDs) seen, until they expire: a `jti` is
-- accepted once per issuer.
CREATE TABLE used_jtis (
    issuer      TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX used_jtis_by_expiry ON used_jtis (expires_at);
