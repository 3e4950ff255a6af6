-- 0006 the lender's API (cloud/api): API keys, which devices an account manager looks after, the
-- registration fields a lender provisions, the operators' side of the event lifecycle, who issued
-- a command, and the audit log of every read of location data (refusals included).
-- TimescaleDB: audit_log is a hypertable (monthly chunks) with a retention policy of the 'audit'
-- data class (cloud/store/retention.py DEFAULT_DAYS; reconciled with [retention] by the receiver).
-- Written against the documented TimescaleDB 2.x API, like 0002.

-- Bearer keys `lw_<key_id>_<secret>`; only the SHA-256 of the 256-bit random secret is stored.
CREATE TABLE api_keys (
    key_id        text COLLATE "C" PRIMARY KEY CHECK (key_id ~ '^[a-z0-9]{12}$'),
    user_name     text NOT NULL CHECK (user_name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role          text NOT NULL CHECK (role IN ('admin', 'risk_officer', 'account_manager', 'auditor')),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT '',
    revoked_at    timestamptz
);

-- The devices an account manager looks after, by user name (every key of that user).
CREATE TABLE device_assignments (
    user_name   text NOT NULL,
    device_id   text COLLATE "C" NOT NULL REFERENCES devices ON DELETE CASCADE,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    assigned_by text NOT NULL DEFAULT '',
    PRIMARY KEY (user_name, device_id)
);
CREATE INDEX device_assignments_device ON device_assignments (device_id);

-- The contract region as a GeoJSON Polygon (contract_region stays its name), and whether the
-- lender still monitors the car.
ALTER TABLE devices ADD COLUMN contract_polygon jsonb
    CHECK (contract_polygon IS NULL OR contract_polygon->>'type' = 'Polygon');
ALTER TABLE devices ADD COLUMN monitoring_state text NOT NULL DEFAULT 'active'
    CHECK (monitoring_state IN ('active', 'suspended', 'retired'));

-- Every acknowledge / resolve of an event by an operator, with who and why (event_lifecycle keeps
-- only the latest state).
CREATE TABLE event_actions (
    id         bigserial PRIMARY KEY,
    device_id  text COLLATE "C" NOT NULL,
    event_id   bigint NOT NULL,
    time       timestamptz NOT NULL DEFAULT now(),
    action     text NOT NULL CHECK (action IN ('acknowledge', 'resolve')),
    user_name  text NOT NULL,
    comment    text NOT NULL DEFAULT ''
);
CREATE INDEX event_actions_event ON event_actions (device_id, event_id, time);

-- Who issued a command, and its signed wire bytes (published again while the broker was away).
ALTER TABLE commands ADD COLUMN created_by text NOT NULL DEFAULT '';
ALTER TABLE commands ADD COLUMN payload bytea;
CREATE INDEX commands_unsettled ON commands (expires_at) WHERE state IN ('pending', 'sent');

-- Who read which device's location, over what range, from where, and whether it was allowed.
-- Append-only for the API's role (deploy/postgres/grants.sql: INSERT only).
CREATE TABLE audit_log (
    time        timestamptz NOT NULL,
    id          bigserial,
    key_id      text,
    user_name   text,
    role        text,
    action      text NOT NULL,
    device_id   text COLLATE "C",
    range_from  timestamptz,
    range_to    timestamptz,
    allowed     boolean NOT NULL,
    status      smallint NOT NULL,
    client_addr text NOT NULL DEFAULT '',
    method      text NOT NULL DEFAULT '',
    path        text NOT NULL DEFAULT '',
    detail      text NOT NULL DEFAULT '',
    PRIMARY KEY (time, id)
);
SELECT create_hypertable('audit_log', by_range('time', INTERVAL '1 month'), create_default_indexes => false);
CREATE INDEX audit_log_device_time ON audit_log (device_id, time);
SELECT add_retention_policy('audit_log', drop_after => INTERVAL '1825 days', if_not_exists => true);
