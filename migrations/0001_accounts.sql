-- Accounts, devices, sessions and per-user data.

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY,
    localpart      TEXT NOT NULL UNIQUE,
    -- argon2id PHC string; NULL for accounts that cannot log in with a password
    password_hash  TEXT,
    is_admin       BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest       BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated    BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts     BIGINT NOT NULL
);

-- One row per profile field (displayname, avatar_url, m.tz, custom keys).
CREATE TABLE profile_fields (
    user_id  TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    field    TEXT NOT NULL,
    value    JSONB NOT NULL,
    PRIMARY KEY (user_id, field)
);

CREATE TABLE devices (
    user_id       TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    device_id     TEXT NOT NULL,
    display_name  TEXT,
    last_seen_ip  TEXT,
    last_seen_ts  BIGINT,
    user_agent    TEXT,
    created_ts    BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored only as SHA-256 hashes of the 256-bit random secrets handed out.
CREATE TABLE refresh_tokens (
    id          BIGSERIAL PRIMARY KEY,
    token_hash  BYTEA NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

CREATE TABLE access_tokens (
    id                BIGSERIAL PRIMARY KEY,
    token_hash        BYTEA NOT NULL UNIQUE,
    user_id           TEXT NOT NULL,
    device_id         TEXT NOT NULL,
    -- NULL: never expires
    expires_ts        BIGINT,
    refresh_token_id  BIGINT REFERENCES refresh_tokens(id) ON DELETE CASCADE,
    created_ts        BIGINT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

-- Short-lived tokens for m.login.token (POST /login/get_token), single use.
CREATE TABLE login_tokens (
    token_hash  BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    expires_ts  BIGINT NOT NULL
);

-- User-interactive auth sessions.
CREATE TABLE uia_sessions (
    session_id   TEXT PRIMARY KEY,
    -- what the session authorises, e.g. "register", "delete_devices"; a session cannot be
    -- replayed against another action
    action       TEXT NOT NULL,
    user_id      TEXT,
    flows        JSONB NOT NULL,
    params       JSONB NOT NULL,
    completed    JSONB NOT NULL DEFAULT '[]',
    created_ts   BIGINT NOT NULL,
    expires_ts   BIGINT NOT NULL
);

-- Account data; room_id '' for global data. stream_pos orders changes for /sync.
CREATE SEQUENCE account_data_stream;
CREATE TABLE account_data (
    user_id     TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    room_id     TEXT NOT NULL DEFAULT '',
    data_type   TEXT NOT NULL,
    content     JSONB NOT NULL,
    stream_pos  BIGINT NOT NULL DEFAULT nextval('account_data_stream'),
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_stream_pos ON account_data (user_id, stream_pos);

CREATE TABLE filters (
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    filter_id  BIGSERIAL,
    filter     JSONB NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
