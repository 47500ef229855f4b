-- Simplified sliding sync (MSC4186): a connection per (device, conn_id), and the positions
-- handed out on it. A position records what the client has been sent, so the next request
-- naming it gets only what changed; older positions go once a newer one is used.
CREATE TABLE sliding_sync_connections (
    conn_key      BIGSERIAL PRIMARY KEY,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    conn_id       TEXT NOT NULL,
    last_used_ts  BIGINT NOT NULL,
    UNIQUE (user_id, device_id, conn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX sliding_sync_connections_used ON sliding_sync_connections (last_used_ts);

CREATE TABLE sliding_sync_positions (
    pos         BIGSERIAL PRIMARY KEY,
    conn_key    BIGINT NOT NULL REFERENCES sliding_sync_connections ON DELETE CASCADE,
    streams     TEXT NOT NULL,    -- the sync token of the stream positions covered
    rooms       JSONB NOT NULL,   -- room ID -> what the client has of it
    lists       JSONB NOT NULL,   -- list name -> room count sent
    created_ts  BIGINT NOT NULL
);
CREATE INDEX sliding_sync_positions_conn ON sliding_sync_positions (conn_key);

-- A room's bump stamp: its newest event of the kinds that move it up a room list.
CREATE INDEX events_bump ON events (room_id, stream_pos)
    WHERE event_type IN ('m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker',
                         'm.call.invite', 'm.poll.start', 'm.beacon_info');
