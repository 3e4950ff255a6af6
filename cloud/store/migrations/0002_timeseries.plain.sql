-- 0002 time-series tables, plain PostgreSQL: native declarative range partitioning by time.
-- Partitions are created ahead (and on demand for late data) by cloud/store/partitions.py;
-- retention detaches and drops whole partitions, never a DELETE.
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
) PARTITION BY RANGE (time);
CREATE UNIQUE INDEX positions_device_time_key ON positions (device_id, time, boot_id, seq, row_idx);

CREATE TABLE signal_samples (
    device_id  text COLLATE "C" NOT NULL,
    time       timestamptz NOT NULL,
    boot_id    bigint NOT NULL,
    seq        bigint NOT NULL,
    row_idx    integer NOT NULL,
    signal_id  integer NOT NULL,
    value      double precision NOT NULL
) PARTITION BY RANGE (time);
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
) PARTITION BY RANGE (time);
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
) PARTITION BY RANGE (event_time);
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
) PARTITION BY RANGE (time);
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
) PARTITION BY RANGE (time);
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
) PARTITION BY RANGE (received_at);

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
) PARTITION BY RANGE (day);

-- Hourly roll-up of signals: a plain view here, a continuous aggregate under TimescaleDB.
CREATE VIEW signal_hourly AS
    SELECT device_id, signal_id, date_trunc('hour', time) AS bucket,
           min(value) AS min_value, max(value) AS max_value, avg(value) AS avg_value,
           count(*) AS samples
    FROM signal_samples
    GROUP BY device_id, signal_id, date_trunc('hour', time);
