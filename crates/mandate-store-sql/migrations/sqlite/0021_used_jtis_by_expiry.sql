-- Used assertions keyed by when they expire first: (expires_at, issuer, jti), the
-- table's one B-tree (WITHOUT ROWID). Assertions expire at most an hour ahead and most
-- clients give them the same lifetime, so a batch's claims land together at the right
-- edge of the key; keyed by (issuer, jti), each claim was a random leaf of the
-- automatic index, plus a row of the table and a leaf of the index by expiry: a token
-- wrote about 1.5 pages for its jti alone (`bench/profile.sh tokens … --wal-pages`).
-- The purge of expired claims is a range of the key's first column, as before.
--
-- What is refused is unchanged for a replay: an assertion presented again carries the
-- same signed `exp`, so the same key, and is refused until it expires (then its `exp`
-- refuses it). Only its signer can make another assertion with the same `jti` and a
-- different `exp`; that one is a new assertion, no longer a replay of the first.
CREATE TABLE used_jtis_keyed (
    expires_at  BIGINT NOT NULL,
    issuer      TEXT NOT NULL,
    jti         TEXT NOT NULL,
    PRIMARY KEY (expires_at, issuer, jti)
) WITHOUT ROWID;
INSERT INTO used_jtis_keyed (expires_at, issuer, jti)
    SELECT expires_at, issuer, jti FROM used_jtis;
DROP TABLE used_jtis;
ALTER TABLE used_jtis_keyed RENAME TO used_jtis;
