-- Thumbnails made on first request and kept in the object store under
-- thumbnails/<media_id>/<width>x<height>-<method>.
CREATE TABLE media_thumbnails (
    media_id      TEXT NOT NULL REFERENCES media(media_id) ON DELETE CASCADE,
    width         INT NOT NULL,
    height        INT NOT NULL,
    method        TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    PRIMARY KEY (media_id, width, height, method)
);
