-- Forked rooms (events from other servers): the resolved state of a room's forward
-- extremities while it has several, which is what the next local event builds on; and
-- events that passed the auth rules against the state before them but not against the
-- current state ("soft failed"): kept in the DAG, never shown to clients.
ALTER TABLE rooms ADD COLUMN resolved_state_group BIGINT;
ALTER TABLE events ADD COLUMN soft_failed BOOLEAN NOT NULL DEFAULT FALSE;
