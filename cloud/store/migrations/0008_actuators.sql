-- 0008 actuators (docs/actuators.md): the per-device secret of the emergency override codes
-- (RFC 4226 HOTP, protocol/override.py) and the counter of the next code to hand out. The device
-- holds the same secret (actuators.override.secret_file) and checks codes without coverage; the
-- cloud hands codes out in order, each one audited (cloud/api/routes/override.py).
CREATE TABLE override_secrets (
    device_id    text COLLATE "C" PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    secret       bytea NOT NULL CHECK (length(secret) BETWEEN 16 AND 64),
    next_counter bigint NOT NULL DEFAULT 0 CHECK (next_counter >= 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE override_secrets IS
    'Emergency override (HOTP) secrets per device: read and written by the API only (grants.sql).';
