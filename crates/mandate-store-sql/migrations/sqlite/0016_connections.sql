-- People's connections to upstream tool servers (authorization code + PKCE with the
-- server's OAuth provider): the access and refresh tokens sealed together by the
-- credential broker (`v1.<key id>.<nonce>.<ciphertext>`, associated data binding
-- tenant, person and server), opaque here; `key_id` names the master key that sealed
-- them. Nothing here is readable without the master key, which never reaches the store.
CREATE TABLE upstream_connections (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    human_id      TEXT NOT NULL REFERENCES humans (id),
    server_id     TEXT NOT NULL REFERENCES tool_servers (id),
    provider      TEXT NOT NULL,
    scope         TEXT NOT NULL,
    sealed        TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    connected_at  BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, human_id, server_id)
);
CREATE INDEX upstream_connections_by_key ON upstream_connections (key_id);
