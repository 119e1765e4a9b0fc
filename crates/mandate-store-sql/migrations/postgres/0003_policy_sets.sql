-- The operator's policy sets when the store is where they live: one row per version,
-- deployment-wide; the highest version is in force. Rows are never updated.
CREATE TABLE policy_sets (
    version     BIGINT PRIMARY KEY,
    digest      TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
