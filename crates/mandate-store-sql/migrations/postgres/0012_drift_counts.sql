-- Drift: a mandate's refused attempts (denied, out of scope), summed across replicas
-- (each replica adds what it counted, at most once a second), and when the alert was
-- claimed: one conditional UPDATE, so exactly one replica raises it.
CREATE TABLE drift_counts (
    mandate_id    TEXT PRIMARY KEY REFERENCES mandates (id),
    tenant_id     TEXT NOT NULL,
    denied        BIGINT NOT NULL,
    out_of_scope  BIGINT NOT NULL,
    alerted_at    BIGINT
);
