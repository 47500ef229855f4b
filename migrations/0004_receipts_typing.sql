-- Read receipts (m.read, m.read.private; threaded) and typing notifications. /sync serves
-- them; stream_pos orders receipt changes for it.
CREATE SEQUENCE receipts_stream;
CREATE TABLE receipts (
    room_id       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    receipt_type  TEXT NOT NULL,
    thread_id     TEXT NOT NULL DEFAULT '',    -- '' unthreaded, 'main', or a thread root
    event_id      TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    stream_pos    BIGINT NOT NULL DEFAULT nextval('receipts_stream'),
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_stream_pos ON receipts (stream_pos);

-- Kept in the database rather than in memory so that every axon process sees them.
CREATE TABLE typing (
    room_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    expires_ts  BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
