-- The ledger's one-round-trip append no longer needs a trigger: it moves the head itself,
-- once per batch, only from where the batch starts (UPDATE … WHERE seq = <from> AND
-- hash = <from>), and inserts the batch's events only if that UPDATE moved it
-- (`WHERE changes() = 1`), both in one transaction — a compare-and-swap, as on
-- PostgreSQL. The trigger ran a lookup and an UPDATE of the head for every event.
-- Every path that inserts events moves the head in the same transaction (`append_on_head`,
-- `append_in`).
DROP TRIGGER IF EXISTS audit_events_next;
