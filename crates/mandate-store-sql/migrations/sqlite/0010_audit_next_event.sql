-- Every event is the next one of its tenant's chain, whoever inserts it, and the head
-- follows each insert. This lets the ledger's writer append a batch as ONE statement
-- (no transaction around a read of the head): when the head it remembers is stale,
-- the insert is refused whole and it falls back to reading the head in a transaction.
CREATE TRIGGER audit_events_next BEFORE INSERT ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit chain head moved')
    WHERE NOT EXISTS (
        SELECT 1 FROM audit_heads WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq - 1
    );
    UPDATE audit_heads SET seq = NEW.seq, hash = NEW.hash WHERE tenant_id = NEW.tenant_id;
END;
