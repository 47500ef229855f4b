-- Single-use nonces for shared-secret admin registration (/_synapse/admin/v1/register).
-- Kept in the database so that any axon process behind a load balancer accepts them.
CREATE TABLE admin_register_nonces (
    nonce       TEXT PRIMARY KEY,
    expires_ts  BIGINT NOT NULL
);
