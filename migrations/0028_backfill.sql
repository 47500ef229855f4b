-- Backfilled history takes stream positions below every live one: the negation of this
-- sequence, allocated a batch at a time and given oldest-lowest, so /messages pages back
-- into it in order while /sync (which only looks forward) never sees it.
CREATE SEQUENCE events_backfill_stream;
