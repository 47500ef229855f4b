-- Publishes committed room events in one round trip: takes the events stream's lock
-- (held until commit, so positions become visible in order), gives the events their
-- positions in the order given, gives changed memberships their events' positions, and
-- NOTIFYs the wake-up keys (the room, and users whose membership changed) tagged with the
-- writing process's origin. Returns the last position and the untagged keys, which the
-- writing process publishes to its own waiters itself after the commit.
--
-- One statement instead of three matters: the lock serialises every event commit on the
-- server, and each round trip under it is time every other writer waits.
CREATE FUNCTION axon_publish_events(
    p_nids bigint[], p_room text, p_lock_key int, p_channel text, p_origin text,
    OUT last_pos bigint, OUT wake_keys text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_nid bigint;
    v_key text;
BEGIN
    last_pos := 0;
    wake_keys := '{}';
    PERFORM pg_advisory_xact_lock(p_lock_key, 0);
    FOREACH v_nid IN ARRAY p_nids LOOP
        UPDATE events SET stream_pos = nextval('events_stream')
        WHERE event_nid = v_nid RETURNING stream_pos INTO last_pos;
    END LOOP;
    IF cardinality(p_nids) > 0 THEN
        wake_keys := wake_keys || ('r:' || p_room);
    END IF;
    FOR v_key IN
        UPDATE memberships m SET stream_pos = e.stream_pos FROM events e
        WHERE e.event_nid = m.event_nid AND m.event_nid = ANY(p_nids)
        RETURNING 'u:' || m.user_id
    LOOP
        wake_keys := wake_keys || v_key;
    END LOOP;
    FOREACH v_key IN ARRAY wake_keys LOOP
        PERFORM pg_notify(p_channel, p_origin || v_key);
    END LOOP;
END $$;
