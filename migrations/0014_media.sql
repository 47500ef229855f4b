-- Local media: metadata here, the bytes in the object store under the media ID. A row
-- with uploaded_ts NULL is a URI handed out by /media/v1/create, waiting for its upload
-- until expires_ts.
CREATE TABLE media (
    media_id      TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    content_type  TEXT,
    filename      TEXT,
    size          BIGINT,
    created_ts    BIGINT NOT NULL,
    uploaded_ts   BIGINT,
    expires_ts    BIGINT
);
CREATE INDEX media_pending ON media (user_id) WHERE uploaded_ts IS NULL;
