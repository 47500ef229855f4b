-- Events of users who deactivated with `erase: true`: members who were not in the room
-- when such an event was sent see it redacted (as Synapse). Marked on the events so that
-- reading a timeline needs no extra lookup; erasure is rare and one-off.
ALTER TABLE events ADD COLUMN sender_erased BOOLEAN NOT NULL DEFAULT FALSE;
