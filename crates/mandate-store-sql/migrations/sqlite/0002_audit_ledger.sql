-- The audit ledger: one hash chain per tenant. Events are only ever inserted.
-- `doc` is the event's JSON exactly as written (TEXT, not JSONB, so its bytes are kept).
CREATE TABLE audit_events (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    mandate_id  TEXT,
    agent_id    TEXT,
    human_id    TEXT,
    hash        TEXT NOT NULL,
    doc         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_by_mandate ON audit_events (tenant_id, mandate_id, seq);
CREATE INDEX audit_by_agent ON audit_events (tenant_id, agent_id, seq);
CREATE INDEX audit_by_human ON audit_events (tenant_id, human_id, seq);
CREATE INDEX audit_by_kind ON audit_events (tenant_id, kind, seq);

-- Each tenant's chain head; appenders lock its row, so chains never fork.
CREATE TABLE audit_heads (
    tenant_id   TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    doc         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

-- Public halves of checkpoint signing keys.
CREATE TABLE audit_keys (
    key_id      TEXT PRIMARY KEY,
    doc         TEXT NOT NULL
);
