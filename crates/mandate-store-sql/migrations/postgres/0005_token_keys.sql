-- Public halves of the token service's signing keys, one per replica and rotation.
-- Verifiers trust every key not yet retired; private keys never reach the store.
CREATE TABLE token_keys (
    kid         TEXT PRIMARY KEY,
    jwk         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retire_at   BIGINT
);
