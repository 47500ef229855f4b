-- Other servers' signing keys (federation::keys): fetched from the server itself or a
-- notary, verified, and kept with how long they may be used.
CREATE TABLE server_keys (
    server_name     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    public_key      TEXT NOT NULL,          -- unpadded base64
    -- Signatures made before this time verify with the key: the document's
    -- valid_until_ts (capped at a week after fetching), or an old key's expired_ts.
    valid_until_ts  BIGINT NOT NULL,
    expired         BOOLEAN NOT NULL,       -- listed in old_verify_keys
    fetched_ts      BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- For each key of each server, the newest document (as that server signed it) that
-- listed it as a current key: what axon serves as a notary (/_matrix/key/v2/query). Per
-- key, so that a server that stops listing a key cannot make the notary forget it.
CREATE TABLE server_key_documents (
    server_name     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    document        JSONB NOT NULL,
    valid_until_ts  BIGINT NOT NULL,
    fetched_ts      BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
