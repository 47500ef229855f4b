-- Transactions received from other servers (PUT /send), so that a retried one is
-- answered without being processed again. Pruned after a day.
CREATE TABLE federation_received_txns (
    origin       TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    response     JSONB NOT NULL,
    received_ts  BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- What each other server is owed: local PDUs (by event) and EDUs, written in the same
-- transaction as what they carry.
CREATE TABLE federation_outbox (
    id           BIGSERIAL PRIMARY KEY,
    destination  TEXT NOT NULL,
    event_nid    BIGINT REFERENCES events (event_nid) ON DELETE CASCADE,
    edu          JSONB,
    queued_ts    BIGINT NOT NULL,
    CHECK ((event_nid IS NULL) <> (edu IS NULL))
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, id);

-- Each destination's retry state, and the lease of the process sending to it (one at a
-- time, across processes).
CREATE TABLE federation_destinations (
    destination      TEXT PRIMARY KEY,
    failures         INT NOT NULL DEFAULT 0,
    failing_since_ts BIGINT,
    next_attempt_ts  BIGINT NOT NULL DEFAULT 0,
    lease_until_ts   BIGINT NOT NULL DEFAULT 0,
    last_success_ts  BIGINT
);
CREATE INDEX federation_destinations_due ON federation_destinations (next_attempt_ts);

-- Events another server sent for the state around one of its events (from /state or
-- /event): kept for lookups (auth events, state resolution) but never in the timeline,
-- the forward extremities or the current state.
ALTER TABLE events ADD COLUMN outlier BOOLEAN NOT NULL DEFAULT FALSE;

-- The servers in a room, without reading all its members: an index on each joined
-- member's server, walked one distinct server at a time (storage::federation).
CREATE INDEX memberships_joined_server
    ON memberships (room_id, (substr(user_id, strpos(user_id, ':') + 1)))
    WHERE membership = 'join';
