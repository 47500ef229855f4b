-- Reports of events, rooms and users, for server admins to review.
CREATE TABLE reports (
    report_id    BIGSERIAL PRIMARY KEY,
    reporter     TEXT NOT NULL,
    room_id      TEXT,
    event_id     TEXT,
    user_id      TEXT,
    reason       TEXT,
    created_ts   BIGINT NOT NULL
);
