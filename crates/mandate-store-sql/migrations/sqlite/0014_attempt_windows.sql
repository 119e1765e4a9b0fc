-- Attempts counted per key in a one-minute window that starts with the key's first
-- attempt, shared by every replica of the store: dynamic client registrations per
-- client address, console sign-in attempts per sign-in name and per address. Keys are
-- SHA-256 hashes (no address or name is kept in the clear); ended windows are deleted
-- as new ones start.
CREATE TABLE attempt_windows (
    key_hash TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL
);
CREATE INDEX attempt_windows_by_start ON attempt_windows (started_at);
