-- Rooms: the server's signing keys, events and their DAG, room state, memberships.
-- See ARCHITECTURE.md ("Room state") for how state groups grow with changes.

-- ed25519 signing keys. The newest unexpired row is the one used for signing; older rows
-- are served as old_verify_keys.
CREATE TABLE signing_keys (
    key_id        TEXT PRIMARY KEY,           -- "ed25519:<version>"
    pkcs8         BYTEA NOT NULL,             -- private key document
    public_key    BYTEA NOT NULL,
    created_ts    BIGINT NOT NULL,
    expired_ts    BIGINT                      -- set on rotation
);

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    room_version  TEXT NOT NULL,
    creator       TEXT NOT NULL,
    is_public     BOOLEAN NOT NULL DEFAULT FALSE,   -- listed in the public room directory
    created_ts    BIGINT NOT NULL
);

-- Position of events in the server-wide events stream. Allocated at the end of the
-- persisting transaction under an advisory lock, so positions commit in order.
CREATE SEQUENCE events_stream;

CREATE TABLE events (
    event_nid         BIGSERIAL PRIMARY KEY,
    event_id          TEXT NOT NULL UNIQUE,
    room_id           TEXT NOT NULL,
    sender            TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    state_key         TEXT,                  -- NULL for message events
    depth             BIGINT NOT NULL,
    origin_server_ts  BIGINT NOT NULL,
    stream_pos        BIGINT UNIQUE,         -- NULL until committed to the timeline
    pdu               JSONB NOT NULL,        -- the full signed PDU as sent over federation
    state_before      BIGINT,                -- state group before the event
    state_after       BIGINT,                -- state group after it (= before for messages)
    redacted_by       TEXT,
    txn_id            TEXT,                  -- client transaction ID, for idempotent sends
    txn_device        TEXT
);
CREATE INDEX events_room_stream ON events (room_id, stream_pos);
CREATE UNIQUE INDEX events_txn ON events (sender, txn_device, txn_id) WHERE txn_id IS NOT NULL;

-- DAG edges: prev_events of each event.
CREATE TABLE event_edges (
    event_nid      BIGINT NOT NULL REFERENCES events(event_nid),
    prev_event_id  TEXT NOT NULL,
    PRIMARY KEY (event_nid, prev_event_id)
);

-- The room's current forward extremities: events with no successor yet.
CREATE TABLE forward_extremities (
    room_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State groups. A group is a point on a segment; its state is the segment's rows up to its
-- seq, on top of the parent segment's rows up to parent_seq, and so on up to a segment
-- with no parent (a snapshot). A new snapshot is started once the deltas since the last
-- one outnumber the state's entries, so rows written stay within twice the changes.
CREATE TABLE state_segments (
    segment_id      BIGSERIAL PRIMARY KEY,
    room_id         TEXT NOT NULL,
    parent_segment  BIGINT REFERENCES state_segments(segment_id),
    parent_seq      INT,
    -- highest seq used on this segment
    tip_seq         INT NOT NULL
);

CREATE TABLE state_groups (
    group_id     BIGSERIAL PRIMARY KEY,
    room_id      TEXT NOT NULL,
    segment_id   BIGINT NOT NULL REFERENCES state_segments(segment_id),
    seq          INT NOT NULL,
    state_size   INT NOT NULL,   -- entries in the full state
    deltas       INT NOT NULL,   -- delta rows between the last snapshot and this group
    UNIQUE (segment_id, seq)
);

CREATE TABLE state_rows (
    segment_id  BIGINT NOT NULL REFERENCES state_segments(segment_id),
    seq         INT NOT NULL,
    event_type  TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_nid   BIGINT NOT NULL,
    PRIMARY KEY (segment_id, event_type, state_key, seq)
);

-- Current state of each room, kept in the same transaction as the event that changes it.
CREATE TABLE current_state (
    room_id     TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_nid   BIGINT NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);

-- Current membership of every user in every room known here.
CREATE TABLE memberships (
    room_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    membership  TEXT NOT NULL,
    event_nid   BIGINT NOT NULL,
    stream_pos  BIGINT,
    forgotten   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, membership);

CREATE TABLE room_aliases (
    alias       TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    creator     TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
