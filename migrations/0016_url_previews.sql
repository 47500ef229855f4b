-- URL previews, cached per URL for an hour.
CREATE TABLE url_previews (
    url         TEXT PRIMARY KEY,
    preview     JSONB NOT NULL,
    fetched_ts  BIGINT NOT NULL
);
