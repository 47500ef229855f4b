-- Invites from other servers to rooms this server may not hold: what the inviting server
-- sent with the invite, {"room_version": ..., "events": [stripped state events]}, shown to
-- the invitee in /sync. NULL for memberships made in a room's DAG here, whose stripped
-- state is read from the room's state at the invite.
ALTER TABLE memberships ADD COLUMN invite_state JSONB;
