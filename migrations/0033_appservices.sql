-- Application services: how far each has been sent the event stream, and the
-- transactions made for it and not yet accepted (kept across restarts, sent in order).
CREATE TABLE appservice_state (
    appservice_id TEXT PRIMARY KEY,
    events_pos    BIGINT NOT NULL,
    next_txn_id   BIGINT NOT NULL DEFAULT 1,
    -- One process sends to an appservice at a time: the holder renews its lease.
    lease_owner   TEXT,
    lease_until   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE appservice_txns (
    appservice_id TEXT NOT NULL,
    txn_id        BIGINT NOT NULL,
    body          JSONB NOT NULL,
    created_ts    BIGINT NOT NULL,
    PRIMARY KEY (appservice_id, txn_id)
);
