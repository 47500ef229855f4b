-- Who joined or left a room after a position: device lists and presence in /sync ask
-- this of every room the user is in.
CREATE INDEX memberships_room_pos ON memberships (room_id, stream_pos);
