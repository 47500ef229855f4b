-- Pushers: where a user's notifications go (a push gateway URL and the device's pushkey).
-- device_id is the device whose access token set the pusher: logging it out removes it.
CREATE TABLE pushers (
    user_id     TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    app_id      TEXT NOT NULL,
    pushkey     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    url         TEXT,
    pusher      JSONB NOT NULL,   -- the pusher as the client set it (spec JSON)
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_key ON pushers (app_id, pushkey);
