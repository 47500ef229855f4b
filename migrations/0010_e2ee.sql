-- End-to-end encryption: the server stores and hands out public keys and relays
-- to-device messages; it never sees a private key or plaintext.

-- Identity keys of a device, as signed by it; removed with the device.
CREATE TABLE device_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_json   JSONB NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices ON DELETE CASCADE
);

-- One-time keys, each claimed (deleted) once.
CREATE TABLE one_time_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_json   JSONB NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices ON DELETE CASCADE
);

-- At most one fallback key per device and algorithm; kept when claimed, marked used.
CREATE TABLE fallback_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_json   JSONB NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices ON DELETE CASCADE
);

-- Cross-signing keys (usage: master, self_signing, user_signing), the newest of each.
CREATE TABLE cross_signing_keys (
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    usage      TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json   JSONB NOT NULL,
    PRIMARY KEY (user_id, usage)
);

-- Signatures uploaded after the key they sign (POST /keys/signatures/upload), merged into
-- that key when it is queried. target_key: a device ID or a cross-signing public key.
CREATE TABLE key_signatures (
    target_user    TEXT NOT NULL,
    target_key     TEXT NOT NULL,
    signer_user    TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key_id)
);

-- Device list stream: each user whose devices or keys changed, at their newest position.
CREATE SEQUENCE device_list_stream;
CREATE TABLE device_list_changes (
    user_id     TEXT PRIMARY KEY,
    stream_pos  BIGINT NOT NULL
);
CREATE INDEX device_list_changes_pos ON device_list_changes (stream_pos);

-- To-device inbox: kept until the device's next sync acknowledges it.
CREATE SEQUENCE to_device_stream;
CREATE TABLE to_device_messages (
    stream_pos  BIGINT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    sender      TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    content     JSONB NOT NULL
);
CREATE INDEX to_device_inbox ON to_device_messages (user_id, device_id, stream_pos);
-- Delivered messages are deleted, so the stream's newest position is kept here (written
-- in the sending transaction, under the stream lock) rather than read as max().
CREATE TABLE to_device_head (
    only_row  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    pos       BIGINT NOT NULL
);
INSERT INTO to_device_head (pos) VALUES (0);

-- Transaction IDs of sendToDevice, so a retried request is not delivered twice.
CREATE TABLE to_device_txns (
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Dehydrated devices (MSC3814): one per user, a device row without a token plus the
-- client's encrypted pickle.
CREATE TABLE dehydrated_devices (
    user_id      TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL,
    device_data  JSONB NOT NULL
);

-- Server-side key backup: versions and the room keys in them.
CREATE TABLE backup_versions (
    user_id     TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    algorithm   TEXT NOT NULL,
    auth_data   JSONB NOT NULL,
    etag        BIGINT NOT NULL DEFAULT 0,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);
CREATE TABLE backup_keys (
    user_id               TEXT NOT NULL,
    version               BIGINT NOT NULL,
    room_id               TEXT NOT NULL,
    session_id            TEXT NOT NULL,
    first_message_index   BIGINT NOT NULL,
    forwarded_count       BIGINT NOT NULL,
    is_verified           BOOLEAN NOT NULL,
    session_data          JSONB NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES backup_versions ON DELETE CASCADE
);
