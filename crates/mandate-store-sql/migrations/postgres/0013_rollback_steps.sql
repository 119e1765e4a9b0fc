-- Rollback: one row per compensated call (the call's `tool.called` event, by its place
-- in the tenant's chain). A run claims a step with one conditional write (a new row,
-- or a failed one taken again), so concurrent rollbacks run a step at most once, and a
-- step that is done is never run again.
CREATE TABLE rollback_steps (
    tenant_id   TEXT NOT NULL,
    call_seq    BIGINT NOT NULL,
    mandate_id  TEXT NOT NULL REFERENCES mandates (id),
    state       TEXT NOT NULL,
    claimed_by  TEXT NOT NULL,
    claimed_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT,
    PRIMARY KEY (tenant_id, call_seq)
);
CREATE INDEX rollback_steps_by_mandate ON rollback_steps (tenant_id, mandate_id, call_seq);
