-- Notifications waiting to be sent to push gateways: one row per (notified event,
-- pusher), written in the event's transaction. A process leases due rows (pushing
-- next_attempt_ts into the future) before sending, so several axon processes never send
-- the same row at once; success deletes it, failure reschedules it with backoff.
CREATE TABLE push_queue (
    id               BIGSERIAL PRIMARY KEY,
    user_id          TEXT NOT NULL,
    app_id           TEXT NOT NULL,
    pushkey          TEXT NOT NULL,
    event_nid        BIGINT NOT NULL,
    actions          JSONB NOT NULL,
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt_ts  BIGINT NOT NULL,
    created_ts       BIGINT NOT NULL
);
CREATE INDEX push_queue_due ON push_queue (next_attempt_ts);
