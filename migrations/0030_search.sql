-- Full-text search (POST /search) over message bodies, room names and topics: a GIN
-- index on each such event's text (English stemming and ranking), which PostgreSQL keeps
-- in the event's own transaction; creating it indexes the events already here. The
-- expression is storage::search::SEARCH_TEXT, which queries must repeat exactly.
CREATE INDEX events_search ON events USING GIN (
    to_tsvector('english', coalesce(pdu->'content'->>'body', pdu->'content'->>'name',
                                    pdu->'content'->>'topic', '')))
    WHERE event_type IN ('m.room.message', 'm.room.name', 'm.room.topic');
