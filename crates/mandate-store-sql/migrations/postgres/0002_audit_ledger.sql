-- The audit ledger: one hash chain per tenant. Events are only ever inserted.
-- `doc` is the event's JSON exactly as written (TEXT, not JSONB, so its bytes are kept).
-- Only the primary key is indexed here, so appends touch the right edge of one B-tree.
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

-- Which events concern which mandate: what traces and most queries ask for. One
-- B-tree, filled behind the appenders in chunks sorted
-- by mandate (see `index_audit`): indexing in every append's commit scattered writes
-- over the tree and cut the ledger's throughput about fourfold on SQLite. Queries by
-- mandate read the indexed part here and scan the unindexed tail of audit_events;
-- other filters scan audit_events.
CREATE TABLE audit_mandate_index (
    tenant_id   TEXT NOT NULL,
    mandate_id  TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, mandate_id, seq)
);

-- How far each tenant's events are in audit_refs.
CREATE TABLE audit_index_state (
    tenant_id   TEXT PRIMARY KEY,
    indexed     BIGINT NOT NULL
);

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
