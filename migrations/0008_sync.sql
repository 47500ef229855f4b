-- /sync: typing changes get stream positions (per room), and every stream's newest
-- position is found by an index. Positions of a stream are taken under that stream's
-- advisory lock, held to commit, so they become visible in order (see storage::streams).
CREATE SEQUENCE typing_stream;
CREATE TABLE typing_rooms (
    room_id     TEXT PRIMARY KEY,
    stream_pos  BIGINT NOT NULL
);
CREATE INDEX typing_rooms_stream ON typing_rooms (stream_pos);
CREATE INDEX account_data_stream_all ON account_data (stream_pos);
-- A user's member events in a room by position: membership at a past sync token.
CREATE INDEX events_member_at ON events (room_id, state_key, stream_pos)
    WHERE event_type = 'm.room.member';
