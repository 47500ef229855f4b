-- A device list change that others see (devices, device keys, master and self-signing
-- keys) moves shared_pos with stream_pos; a change only the user sees (their user-signing
-- key, which others never fetch) moves stream_pos alone, so others are not told to query.
ALTER TABLE device_list_changes ADD COLUMN shared_pos BIGINT NOT NULL DEFAULT 0;
UPDATE device_list_changes SET shared_pos = stream_pos;
CREATE INDEX device_list_changes_shared_pos ON device_list_changes (shared_pos);
