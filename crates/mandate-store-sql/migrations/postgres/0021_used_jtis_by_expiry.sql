-- Used assertions keyed by when they expire first: (expires_at, issuer, jti). A
-- batch's claims then land together at the right edge of the key's index instead of
-- on random leaves of one keyed by (issuer, jti), and the index by expiry, which the
-- key now serves, goes (one index written per claim instead of two). The purge of
-- expired claims is a range of the key's first column, as before.
--
-- What is refused is unchanged for a replay: an assertion presented again carries the
-- same signed `exp`, so the same key, and is refused until it expires (then its `exp`
-- refuses it). Only its signer can make another assertion with the same `jti` and a
-- different `exp`; that one is a new assertion, no longer a replay of the first.
ALTER TABLE used_jtis DROP CONSTRAINT used_jtis_pkey;
DROP INDEX used_jtis_by_expiry;
ALTER TABLE used_jtis ADD PRIMARY KEY (expires_at, issuer, jti);
