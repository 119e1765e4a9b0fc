-- The grants table, rebuilt for the ledger's batches (SQLite only): a grant's parent
-- is checked at COMMIT instead of at each INSERT (a deferred foreign key). An immediate one makes SQLite keep a statement journal for the grants'
-- multi-row INSERT inside a batch's transaction: a copy of every page the statement
-- touches, to undo that statement alone. Nothing is weaker: a grant whose parent is
-- missing still never commits (the batch's transaction fails at COMMIT and is rolled
-- back), and the batch checks its parents are live before writing (`LIVE_PARENTS`).
--
-- (Tried and left: `used_jtis` WITHOUT ROWID. Its index by expiry then carries the
-- whole key of each row instead of a rowid, and a token wrote more pages, not fewer.)
CREATE TABLE grants_rebuilt (
    jti         TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    mandate_id  TEXT,
    agent_id    TEXT NOT NULL,
    parent_jti  TEXT REFERENCES grants_rebuilt (jti) DEFERRABLE INITIALLY DEFERRED,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    doc         TEXT NOT NULL
);
INSERT INTO grants_rebuilt (jti, tenant_id, mandate_id, agent_id, parent_jti, expires_at, revoked_at, doc)
    SELECT jti, tenant_id, mandate_id, agent_id, parent_jti, expires_at, revoked_at, doc FROM grants;
DROP TABLE grants;
-- Renaming rewrites the self-reference too (REFERENCES "grants").
ALTER TABLE grants_rebuilt RENAME TO grants;
CREATE INDEX grants_by_mandate ON grants (tenant_id, mandate_id);
CREATE INDEX grants_by_parent ON grants (parent_jti) WHERE parent_jti IS NOT NULL;
CREATE INDEX grants_by_revocation ON grants (revoked_at) WHERE revoked_at IS NOT NULL;
