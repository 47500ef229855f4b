-- The to-device inbox bound is per sender (limits.max_pending_to_device): counting one
-- sender's messages to a device must not scan the device's whole inbox.
CREATE INDEX to_device_inbox_sender ON to_device_messages (user_id, device_id, sender);
