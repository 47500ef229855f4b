-- The state event a state event replaced (its predecessor for the same type and key in the
-- state before it), for clients' `unsigned.prev_content` and `replaces_state`: Element
-- tells a display name change from a join by it. Events stored before this have none.
ALTER TABLE events ADD COLUMN replaces_nid BIGINT;
