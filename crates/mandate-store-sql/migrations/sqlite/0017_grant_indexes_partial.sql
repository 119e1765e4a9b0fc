-- Most grants are neither delegated nor revoked: index only those that are. A new
-- grant then writes two B-trees fewer (every token issuance writes one grant), and
-- the lookups these serve (a grant's children, revocations since a time) name a
-- value, so they match the indexes' condition.
DROP INDEX grants_by_parent;
CREATE INDEX grants_by_parent ON grants (parent_jti) WHERE parent_jti IS NOT NULL;
DROP INDEX grants_by_revocation;
CREATE INDEX grants_by_revocation ON grants (revoked_at) WHERE revoked_at IS NOT NULL;
