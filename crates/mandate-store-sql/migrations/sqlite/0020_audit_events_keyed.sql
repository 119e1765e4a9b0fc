-- The ledger's events keyed by one integer (SQLite only): a tenant's number in
-- audit_heads times 2^40, plus the event's sequence number. The rows are then the
-- table's one B-tree, appended at each tenant's right edge; the key (tenant_id, seq) of
-- before was a second B-tree beside them (SQLite's automatic index), and a commit of
-- ledger events wrote about a quarter fewer pages without it (bench/ledger-layout.py).
-- Nothing is weaker: the key is unique as (tenant_id, seq) was, and the CHECK ties it
-- to the row's own sequence number, so a row whose key was not made from its tenant's
-- number (none, or another's) is refused. Reads add `tenant_id = ?` to the key's range.
--
-- audit_heads gains the number: `num`, the table's own key (INTEGER PRIMARY KEY, which
-- VACUUM keeps, unlike a plain rowid), given at a tenant's first event.
CREATE TABLE audit_heads_keyed (
    num         INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL UNIQUE,
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL
);
INSERT INTO audit_heads_keyed (tenant_id, seq, hash)
    SELECT tenant_id, seq, hash FROM audit_heads ORDER BY tenant_id;
DROP TABLE audit_heads;
ALTER TABLE audit_heads_keyed RENAME TO audit_heads;

CREATE TABLE audit_events_keyed (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    mandate_id  TEXT,
    agent_id    TEXT,
    human_id    TEXT,
    hash        TEXT NOT NULL,
    doc         TEXT NOT NULL,
    CHECK (id IS NOT NULL AND seq > 0 AND seq < 1099511627776
           AND id >= 1099511627776 AND id % 1099511627776 = seq)
);
-- An event whose tenant has no head gets no key and fails the CHECK: the migration
-- stops rather than drop it.
INSERT INTO audit_events_keyed (id, tenant_id, seq, at, kind, mandate_id, agent_id, human_id, hash, doc)
    SELECT h.num * 1099511627776 + e.seq, e.tenant_id, e.seq, e.at, e.kind, e.mandate_id,
           e.agent_id, e.human_id, e.hash, e.doc
    FROM audit_events e LEFT JOIN audit_heads h ON h.tenant_id = e.tenant_id
    ORDER BY h.num, e.seq;
DROP TABLE audit_events;
ALTER TABLE audit_events_keyed RENAME TO audit_events;
