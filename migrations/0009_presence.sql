-- Presence: one row per user who has had any. Each visible change takes a position of
-- the presence stream (under its advisory lock, like the other streams). last_sync_ts is
-- how long the user counts as syncing: a sync in progress promises itself until its
-- timeout, so a process that dies takes its users offline by itself.
CREATE SEQUENCE presence_stream;
CREATE TABLE presence (
    user_id           TEXT PRIMARY KEY,
    state             TEXT NOT NULL,
    status_msg        TEXT,
    last_active_ts    BIGINT NOT NULL,
    currently_active  BOOLEAN NOT NULL,
    last_sync_ts      BIGINT NOT NULL,
    stream_pos        BIGINT NOT NULL
);
CREATE INDEX presence_stream_pos ON presence (stream_pos);
-- The timeout sweep only looks at users who are not offline.
CREATE INDEX presence_not_offline ON presence (user_id) WHERE state <> 'offline';
