-- Event relations (m.relates_to with a rel_type): edits, threads, references, annotations.
CREATE TABLE event_relations (
    event_nid   BIGINT PRIMARY KEY REFERENCES events(event_nid),
    room_id     TEXT NOT NULL,
    parent_id   TEXT NOT NULL,     -- the event related to
    rel_type    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    sender      TEXT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (parent_id, rel_type);
CREATE INDEX event_relations_threads ON event_relations (room_id, rel_type);
