-- Sealed secrets (the credential broker's vault): the sealed form is opaque text
-- (`v1.<key id>.<nonce>.<ciphertext>`); `key_id` names the master key that sealed it,
-- so a rotation finds what still needs resealing. Nothing here is readable without
-- the master key, which never reaches the store.
CREATE TABLE vault_secrets (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    sealed      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE INDEX vault_secrets_by_key ON vault_secrets (key_id);
