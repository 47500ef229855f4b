-- Account moderation by server admins (spec v1.18): a suspended account can read and
-- leave but not take part; a locked one can only log out.
ALTER TABLE users
    ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE;
