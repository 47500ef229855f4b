-- What push rules decided for each local user about each event: written with the event
-- (same transaction), read for unread counts (after the user's read receipt) and
-- /notifications. thread_id: 'main' or the thread root's event ID.
CREATE TABLE event_push_actions (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    event_nid  BIGINT NOT NULL,
    thread_id  TEXT NOT NULL,
    notify     BOOLEAN NOT NULL,
    highlight  BOOLEAN NOT NULL,
    actions    JSONB NOT NULL,
    PRIMARY KEY (user_id, event_nid)
);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, event_nid);
