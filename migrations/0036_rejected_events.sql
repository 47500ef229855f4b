-- Events another server sent that the auth rules reject are kept (as outliers: out of
-- the timeline, the state and the forward extremities) so that events built on them are
-- not stuck on a missing prev event; their state after is the state before them.
ALTER TABLE events ADD COLUMN rejected BOOLEAN NOT NULL DEFAULT FALSE;
