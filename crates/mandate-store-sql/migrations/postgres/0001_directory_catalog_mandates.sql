-- Mandate's first schema (PostgreSQL).
-- Each entity keeps its full JSON form in `doc`; the other columns exist to be
-- indexed, filtered on, or constrained. Times are microseconds since the Unix epoch.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    doc         JSONB NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    token_hash  TEXT NOT NULL UNIQUE,
    doc         JSONB NOT NULL
);

CREATE TABLE humans (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    email       TEXT NOT NULL,
    doc         JSONB NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE human_groups (
    human_id    TEXT NOT NULL REFERENCES humans (id),
    group_name  TEXT NOT NULL,
    PRIMARY KEY (human_id, group_name)
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    owner_id    TEXT NOT NULL REFERENCES humans (id),
    status      TEXT NOT NULL,
    spiffe_id   TEXT UNIQUE,
    fed_issuer  TEXT,
    fed_subject TEXT,
    doc         JSONB NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (fed_issuer, fed_subject)
);
CREATE INDEX agents_by_owner ON agents (tenant_id, owner_id);

CREATE TABLE tool_servers (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    doc         JSONB NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE tools (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    server_id   TEXT NOT NULL REFERENCES tool_servers (id),
    name        TEXT NOT NULL,
    risk_tier   TEXT NOT NULL,
    doc         JSONB NOT NULL,
    UNIQUE (server_id, name)
);
CREATE INDEX tools_by_tenant ON tools (tenant_id, id);

CREATE TABLE mandates (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    human_id    TEXT NOT NULL REFERENCES humans (id),
    status      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    doc         JSONB NOT NULL
);
CREATE INDEX mandates_by_tenant_status ON mandates (tenant_id, status, id);
CREATE INDEX mandates_by_agent ON mandates (tenant_id, agent_id, id);
CREATE INDEX mandates_by_human ON mandates (tenant_id, human_id, id);
CREATE INDEX mandates_by_expiry ON mandates (status, expires_at);

-- Who must consent to a mandate (its grantor and every named owner); fixed with the terms.
CREATE TABLE mandate_consenters (
    mandate_id  TEXT NOT NULL REFERENCES mandates (id),
    human_id    TEXT NOT NULL REFERENCES humans (id),
    PRIMARY KEY (mandate_id, human_id)
);
CREATE INDEX mandate_consenters_by_human ON mandate_consenters (human_id, mandate_id);

CREATE TABLE consents (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    mandate_id  TEXT NOT NULL REFERENCES mandates (id),
    human_id    TEXT NOT NULL REFERENCES humans (id),
    decided_at  BIGINT NOT NULL,
    doc         JSONB NOT NULL,
    UNIQUE (mandate_id, human_id)
);
