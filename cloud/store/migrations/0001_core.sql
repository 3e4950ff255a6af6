-- 0001 core: the device registry, commands, and the helpers every storage mode shares.
-- Time-series tables (positions, signals, events, status, acks, rejects, summaries) are created by
-- 0002, whose file is chosen by the storage mode recorded in lienwatch_storage.

CREATE TABLE devices (
    device_id        text COLLATE "C" PRIMARY KEY
                     CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    vin              text UNIQUE CHECK (vin ~ '^[A-HJ-NPR-Z0-9]{17}$'),
    cert_fingerprint text UNIQUE CHECK (cert_fingerprint ~ '^[0-9a-f]{64}$'),
    time_zone        text NOT NULL DEFAULT 'UTC',
    contract_region  text NOT NULL DEFAULT '',
    registered_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE devices IS
    'Registered gateways. device_id is the certificate common name, which the broker also uses as identity.';

CREATE TABLE points_of_interest (
    device_id  text COLLATE "C" NOT NULL REFERENCES devices ON DELETE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    kind       text NOT NULL DEFAULT 'other',
    lat_deg    double precision NOT NULL CHECK (lat_deg BETWEEN -90 AND 90),
    lon_deg    double precision NOT NULL CHECK (lon_deg BETWEEN -180 AND 180),
    radius_m   real NOT NULL DEFAULT 200 CHECK (radius_m > 0),
    PRIMARY KEY (device_id, name)
);

-- The latest known state of each device, upserted by the receiver with every batch.
CREATE TABLE device_latest (
    device_id          text COLLATE "C" PRIMARY KEY,
    last_message_at    timestamptz,
    last_received_at   timestamptz,
    last_position_at   timestamptz,
    lat_deg            double precision,
    lon_deg            double precision,
    speed_kmh          real
);

-- Downlink commands (written by the API) and their state as the device acknowledges them.
CREATE TABLE commands (
    command_id   text COLLATE "C" PRIMARY KEY,
    device_id    text COLLATE "C" NOT NULL,
    nonce        bytea NOT NULL UNIQUE CHECK (length(nonce) = 16),
    kind         text NOT NULL,
    body         jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    sent_at      timestamptz,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'sent', 'accepted', 'done', 'rejected', 'failed', 'expired')),
    acked_at     timestamptz,
    ack_detail   text
);
CREATE INDEX commands_device_created ON commands (device_id, created_at DESC);

-- Which (device, local day) summaries need recomputing from positions (see cloud/store/summaries.py).
CREATE TABLE summary_dirty (
    device_id text COLLATE "C" NOT NULL,
    day       date NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, day)
);

-- Great-circle distance in km (mean Earth radius 6371.0088 km).
CREATE FUNCTION lienwatch_haversine_km(
    lat1 double precision, lon1 double precision, lat2 double precision, lon2 double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT 2 * 6371.0088 * asin(sqrt(
        power(sin(radians(lat2 - lat1) / 2), 2)
        + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lon2 - lon1) / 2), 2)
    ))
$$;
