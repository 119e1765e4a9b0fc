-- Access reviews. An agent's sponsors: people answerable for it beside its owner (the
-- agent's doc holds the list; these rows let a person's review find the agents they
-- sponsor), rewritten with the agent. A reviewer's mark on a finding: one row per
-- finding (its id is derived from agent, kind and subject, so it is the same in every
-- report), the latest mark wins; every mark is also an audit event, written in the
-- same transaction.
CREATE TABLE agent_sponsors (
    tenant_id   TEXT NOT NULL,
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    human_id    TEXT NOT NULL REFERENCES humans (id),
    PRIMARY KEY (agent_id, human_id)
);
CREATE INDEX agent_sponsors_by_human ON agent_sponsors (tenant_id, human_id);

CREATE TABLE review_marks (
    tenant_id   TEXT NOT NULL,
    finding_id  TEXT NOT NULL,
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    status      TEXT NOT NULL,
    comment     TEXT,
    marked_by   TEXT NOT NULL,
    marked_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, finding_id)
);
CREATE INDEX review_marks_by_agent ON review_marks (tenant_id, agent_id);
