-- A refresh token stays valid until the tokens issued in exchange for it are used (the
-- spec, so a client whose /refresh response was lost is not logged out). `replaced_by` is
-- the refresh token issued for it; the old row goes once its successor (or the access
-- token issued with that) is used.
ALTER TABLE refresh_tokens
    ADD COLUMN replaced_by BIGINT REFERENCES refresh_tokens(id) ON DELETE SET NULL;
CREATE INDEX refresh_tokens_replaced_by ON refresh_tokens (replaced_by)
    WHERE replaced_by IS NOT NULL;
