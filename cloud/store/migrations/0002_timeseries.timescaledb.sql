-- 0002 time-series tables, TimescaleDB 2.x: hypertables partitioned by time, compressed chunks
-- segmented by device, retention by drop_chunks policies (configured by cloud/store/retention.py),
-- an hourly continuous aggregate of signals. Written against the documented 2.x API.
-- The unique index of every table starts with (device_id, time): it deduplicates redelivered
-- messages (device, boot, seq[, row]) AND serves per-device time-range queries, so each table
-- carries exactly one index (the ingest rate depends on it).

CREATE TABLE positions (
    device_id     text COLLATE "C" NOT NULL,
    time          timestamptz NOT NULL,
    boot_id       bigint NOT NULL,
    seq           bigint NOT NULL,
    row_idx       integer NOT NULL,
    lat_deg       double precision NOT NULL,
    lon_deg       double precision NOT NULL,
    alt_m         real,
    speed_kmh     real,
    heading_deg   real,
    hdop          real,
    sats          smallint,
    fix_type      smallint,
    clock_quality smallint NOT NULL
);
CREATE UNIQUE INDEX positions_device_time_key ON positions (device_id, time, boot_id, seq, row_idx);

CREATE TABLE signal_samples (
    device_id  text COLLATE "C" NOT NULL,
    time       timestamptz NOT NULL,
    boot_id    bigint NOT NULL,
    seq        bigint NOT NULL,
    row_idx    integer NOT NULL,
    signal_id  integer NOT NULL,
    value      double precision NOT NULL
);
CREATE UNIQUE INDEX signal_samples_device_time_key
    ON signal_samples (device_id, time, boot_id, seq, row_idx);

CREATE TABLE events (
    device_id     text COLLATE "C" NOT NULL,
    time          timestamptz NOT NULL,
    boot_id       bigint NOT NULL,
    seq           bigint NOT NULL,
    event_id      bigint NOT NULL,
    detector      text NOT NULL,
    severity      text NOT NULL CHECK (severity IN ('WARNING', 'ALERT', 'EMERGENCY')),
    lat_deg       double precision,
    lon_deg       double precision,
    speed_kmh     real,
    evidence      jsonb NOT NULL DEFAULT '{}',
    detail        text NOT NULL DEFAULT '',
    clock_quality smallint NOT NULL,
    received_at   timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX events_device_time_key ON events (device_id, time, boot_id, seq);

-- Lifecycle of each event (open -> acknowledged -> resolved | dismissed), kept apart from the
-- immutable event rows so that compressed event chunks (TimescaleDB) are never updated.
CREATE TABLE event_lifecycle (
    device_id   text COLLATE "C" NOT NULL,
    event_time  timestamptz NOT NULL,
    boot_id     bigint NOT NULL,
    seq         bigint NOT NULL,
    state       text NOT NULL DEFAULT 'open'
                CHECK (state IN ('open', 'acknowledged', 'resolved', 'dismissed')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text,
    note        text,
    PRIMARY KEY (device_id, event_time, boot_id, seq)
);
CREATE INDEX event_lifecycle_open ON event_lifecycle (state, event_time) WHERE state <> 'resolved';

CREATE TABLE device_status (
    device_id     text COLLATE "C" NOT NULL,
    time          timestamptz NOT NULL,
    boot_id       bigint NOT NULL,
    seq           bigint NOT NULL,
    power_state   text,
    supply_v      real,
    backup_v      real,
    queue_depth   bigint,
    firmware      text,
    config_version bigint,
    energy_forecast_days real,
    body          jsonb NOT NULL DEFAULT '{}',
    clock_quality smallint NOT NULL
);
CREATE UNIQUE INDEX device_status_device_time_key ON device_status (device_id, time, boot_id, seq);

CREATE TABLE command_acks (
    device_id     text COLLATE "C" NOT NULL,
    time          timestamptz NOT NULL,
    boot_id       bigint NOT NULL,
    seq           bigint NOT NULL,
    nonce         bytea NOT NULL,
    status        text NOT NULL,
    detail        text NOT NULL DEFAULT '',
    clock_quality smallint NOT NULL
);
CREATE UNIQUE INDEX command_acks_device_time_key ON command_acks (device_id, time, boot_id, seq);

CREATE TABLE rejected_messages (
    id                bigserial,
    received_at       timestamptz NOT NULL,
    receiver_id       text NOT NULL,
    topic             text NOT NULL,
    claimed_device_id text,
    reason_code       text NOT NULL,
    reason            text NOT NULL,
    payload           bytea NOT NULL,
    payload_size      integer NOT NULL,
    truncated         boolean NOT NULL,
    PRIMARY KEY (received_at, id)
);

CREATE TABLE daily_summaries (
    device_id             text COLLATE "C" NOT NULL,
    day                   date NOT NULL,
    distance_km           double precision NOT NULL DEFAULT 0,
    driving_minutes       double precision NOT NULL DEFAULT 0,
    night_driving_minutes double precision NOT NULL DEFAULT 0,
    stationary_hours      double precision NOT NULL DEFAULT 0,
    harsh_accel_count     integer NOT NULL DEFAULT 0,
    harsh_brake_count     integer NOT NULL DEFAULT 0,
    harsh_corner_count    integer NOT NULL DEFAULT 0,
    max_speed_kmh         real,
    min_supply_v          real,
    ev_soh_pct            real,
    ev_soh_at             timestamptz,
    positions_count       integer NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, day)
);

SELECT create_hypertable('positions', by_range('time', INTERVAL '7 days'));
SELECT create_hypertable('signal_samples', by_range('time', INTERVAL '1 day'));
SELECT create_hypertable('events', by_range('time', INTERVAL '30 days'));
SELECT create_hypertable('event_lifecycle', by_range('event_time', INTERVAL '30 days'));
SELECT create_hypertable('device_status', by_range('time', INTERVAL '7 days'));
SELECT create_hypertable('command_acks', by_range('time', INTERVAL '30 days'));
SELECT create_hypertable('rejected_messages', by_range('received_at', INTERVAL '1 day'));
SELECT create_hypertable('daily_summaries', by_range('day', INTERVAL '30 days'));

-- Compression: one segment per device, newest first inside a segment (track queries read
-- one device's recent rows). Chunks older than a week are compressed in the background.
ALTER TABLE positions SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                           timescaledb.compress_orderby = 'time DESC');
ALTER TABLE signal_samples SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                                timescaledb.compress_orderby = 'time DESC, signal_id');
ALTER TABLE device_status SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                               timescaledb.compress_orderby = 'time DESC');
SELECT add_compression_policy('positions', compress_after => INTERVAL '7 days');
SELECT add_compression_policy('signal_samples', compress_after => INTERVAL '3 days');
SELECT add_compression_policy('device_status', compress_after => INTERVAL '7 days');

-- Hourly roll-up of signals, refreshed in the background.
CREATE MATERIALIZED VIEW signal_hourly WITH (timescaledb.continuous) AS
    SELECT device_id, signal_id, time_bucket(INTERVAL '1 hour', time) AS bucket,
           min(value) AS min_value, max(value) AS max_value, avg(value) AS avg_value,
           count(*) AS samples
    FROM signal_samples
    GROUP BY device_id, signal_id, time_bucket(INTERVAL '1 hour', time)
    WITH NO DATA;
SELECT add_continuous_aggregate_policy('signal_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
