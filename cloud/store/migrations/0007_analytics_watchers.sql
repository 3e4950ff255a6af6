-- 0007 analytics and server-side watchers (cloud/analytics, cloud/watchers).
--
-- Ignition (Vehicle.LowVoltageSystemState, signal 42) is what trips are made of
-- (cloud/analytics/trips.py) and the DTC count (Vehicle.Diagnostics.DTCCount, 15) goes into the
-- vehicle report. signal_samples carries one index on purpose (the ingest rate depends on it);
-- this partial one is touched only by those two signals, a small fraction of all samples, so
-- ingest pays little while a month of them is read without scanning the device's other signals.
CREATE INDEX signal_samples_sparse ON signal_samples (device_id, signal_id, time) WHERE signal_id IN (15, 42);

-- Server-side watchers raise events into the same `events` / `event_lifecycle` tables as devices,
-- with a server origin that no device can produce: boot_id -1 (a device's boot id is 0..2^32-1),
-- a negative event_id (a device's is 0..2^63-1) and a detector named `server.<watcher>`.
-- One row per condition currently raised, so a condition is raised once and cleared once, however
-- many processes run the watchers (they lock the row's key while they decide).
CREATE SEQUENCE watcher_event_ids;
CREATE TABLE watcher_state (
    device_id  text COLLATE "C" NOT NULL,
    watcher    text NOT NULL,
    event_id   bigint NOT NULL,
    event_time timestamptz NOT NULL,
    seq        bigint NOT NULL,
    severity   text NOT NULL,
    evidence   jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (device_id, watcher)
);
COMMENT ON TABLE watcher_state IS
    'Conditions a server-side watcher has raised and not yet cleared (cloud/watchers).';
