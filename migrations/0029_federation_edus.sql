-- Presence of other servers' users, as their servers send it: only the validity their
-- server's updates give it applies here, not this server's idle rules.
ALTER TABLE presence ADD COLUMN remote BOOLEAN NOT NULL DEFAULT FALSE;

-- The stream_id of the last m.device_list_update sent about a local user: the next
-- update's prev_id, and the stream_id /user/devices answers.
CREATE TABLE device_list_outbound (
    user_id    TEXT PRIMARY KEY,
    stream_id  BIGINT NOT NULL
);

-- Other servers' users' devices as their servers describe them (/user/devices, then
-- m.device_list_update and m.signing_key_update EDUs), at the stream_id last applied.
-- Kept while a local user shares a room with them; dropped on a gap until resynced.
CREATE TABLE remote_device_lists (
    user_id           TEXT PRIMARY KEY,
    stream_id         BIGINT NOT NULL,
    master_key        JSONB,
    self_signing_key  JSONB,
    synced_ts         BIGINT NOT NULL
);
CREATE TABLE remote_devices (
    user_id       TEXT NOT NULL REFERENCES remote_device_lists (user_id) ON DELETE CASCADE,
    device_id     TEXT NOT NULL,
    display_name  TEXT,
    keys          JSONB,
    PRIMARY KEY (user_id, device_id)
);

-- OpenID tokens (POST /user/{userId}/openid/request_token), by hash, for another
-- server's /openid/userinfo to name their user.
CREATE TABLE openid_tokens (
    token_hash  BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL,
    expires_ts  BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
