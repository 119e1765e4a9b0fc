-- The OAuth authorization server: clients registered with RFC 7591 (their validated
-- metadata as JSON), the agent each client acts as for each human, and once-only
-- records (pending authorization requests, authorization codes) kept by the SHA-256 of
-- the secret that names them, never the secret.
CREATE TABLE oauth_clients (
    client_id   TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    metadata    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE oauth_client_agents (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    client_id   TEXT NOT NULL,
    human_id    TEXT NOT NULL REFERENCES humans (id),
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    PRIMARY KEY (tenant_id, client_id, human_id)
);
CREATE TABLE oauth_once (
    kind        TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    data        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (kind, key_hash)
);
CREATE INDEX oauth_once_by_expiry ON oauth_once (expires_at);
