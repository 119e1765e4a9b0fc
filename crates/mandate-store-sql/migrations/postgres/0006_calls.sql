-- What the gateway spends and holds. Budgets spent per mandate live apart from the
-- mandate document, so spending is one conditional UPDATE that never races the
-- mandate's own versioned updates.
CREATE TABLE mandate_usage (
    mandate_id  TEXT PRIMARY KEY REFERENCES mandates (id),
    tenant_id   TEXT NOT NULL,
    calls       BIGINT NOT NULL,
    amount      BIGINT NOT NULL
);

-- Calls held for a human's approval, bound to the exact arguments' hash. At most one
-- live (pending or approved-and-unused) approval per call.
CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    mandate_id      TEXT NOT NULL REFERENCES mandates (id),
    agent_id        TEXT NOT NULL,
    tool            TEXT NOT NULL,
    arguments_hash  TEXT NOT NULL,
    status          TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    doc             TEXT NOT NULL
);
CREATE INDEX approvals_by_tenant_status ON approvals (tenant_id, status, id);
CREATE INDEX approvals_by_mandate ON approvals (tenant_id, mandate_id, id);
CREATE UNIQUE INDEX approvals_live_per_call
    ON approvals (tenant_id, mandate_id, agent_id, tool, arguments_hash)
    WHERE status IN ('pending', 'approved');

-- Calls a recommend-only mandate recorded for a human to execute.
CREATE TABLE proposals (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    mandate_id  TEXT NOT NULL REFERENCES mandates (id),
    status      TEXT NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX proposals_by_tenant_status ON proposals (tenant_id, status, id);
CREATE INDEX proposals_by_mandate ON proposals (tenant_id, mandate_id, id);
