-- nhn inventory, schema version 5: one-time tokens with which a booting machine's initrd fetches
-- its boot secrets (the CHAP account of its root volume). Only the token's SHA-256 is kept.
CREATE TABLE boot_tokens (
    token_sha256 TEXT PRIMARY KEY,
    mac          TEXT NOT NULL,
    address      TEXT NOT NULL,                  -- the DHCP address it was issued to
    expires_at   INTEGER NOT NULL,               -- unix seconds
    used_at      INTEGER
);
CREATE INDEX boot_tokens_expiry ON boot_tokens(expires_at);
