-- Third-party identifiers (email addresses) of accounts, the validation sessions that
-- prove them, and the identity servers an account's 3PIDs were bound to through us.

CREATE TABLE user_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    validated_ts BIGINT NOT NULL,
    added_ts     BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- A requestToken session: the token mailed is kept only as its hash; send_attempt makes
-- a repeated request (same secret, address and attempt) answer the same session unsent.
CREATE TABLE threepid_sessions (
    session_id    TEXT PRIMARY KEY,
    client_secret TEXT NOT NULL,
    medium        TEXT NOT NULL,
    address       TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    send_attempt  BIGINT NOT NULL,
    next_link     TEXT,
    created_ts    BIGINT NOT NULL,
    expires_ts    BIGINT NOT NULL,
    validated_ts  BIGINT
);
CREATE INDEX threepid_sessions_secret ON threepid_sessions (client_secret, medium, address);
CREATE INDEX threepid_sessions_expiry ON threepid_sessions (expires_ts);

CREATE TABLE threepid_id_server_bindings (
    user_id   TEXT NOT NULL,
    medium    TEXT NOT NULL,
    address   TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);
