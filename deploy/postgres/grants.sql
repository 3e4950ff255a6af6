-- Table writes of the receiver and the API: run as lienwatch_migrate after every
-- `lienwatch cloud migrate` (`psql -v ON_ERROR_STOP=1 -f grants.sql`); safe to repeat.
-- Reads come from the default privileges in roles.sql. Anything not listed here stays read-only
-- to the receiver: above all no DELETE or TRUNCATE of stored data, and no DDL.

-- Telemetry, events, statuses, acks, rejects: append only.
GRANT INSERT ON signal_samples, positions, events, device_status, command_acks,
    rejected_messages TO lienwatch_ingest;
-- Latest-state and summary rows are upserted; an event's lifecycle row is resolved by the
-- device's clear; commands get their ack state.
GRANT INSERT, UPDATE ON device_latest, daily_summaries, event_lifecycle TO lienwatch_ingest;
GRANT UPDATE ON commands TO lienwatch_ingest;
-- Packed tracks (migration 0009) are rewritten whenever their day is recomputed.
GRANT INSERT, UPDATE ON track_days TO lienwatch_ingest;
-- An event's lifecycle is resolved by the device's clear, and a last will (uplink.offline) when
-- the device is back online: those columns only.
GRANT UPDATE (state, updated_at, updated_by, note) ON event_lifecycle TO lienwatch_ingest;
-- The summary work queue: marked by batches, claimed (FOR UPDATE SKIP LOCKED) and deleted.
GRANT INSERT, UPDATE, DELETE ON summary_dirty TO lienwatch_ingest;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO lienwatch_ingest;

-- The API (cloud/api): event lifecycle and commands, registration and provisioning of devices,
-- API keys and assignments (admin endpoints), and the audit log, which it may only append to:
-- no UPDATE or DELETE of an audit record (retention is the owner's, `lienwatch cloud maintain`).
GRANT INSERT, UPDATE ON event_lifecycle, commands TO lienwatch_api;
GRANT INSERT, UPDATE ON devices, api_keys TO lienwatch_api;
GRANT INSERT, UPDATE, DELETE ON points_of_interest, device_assignments TO lienwatch_api;
GRANT INSERT ON event_actions, audit_log TO lienwatch_api;
-- Rate-limit buckets shared by the API's processes (migration 0012): upserted per request, idle
-- ones deleted.
GRANT INSERT, UPDATE, DELETE ON api_rate_buckets TO lienwatch_api;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO lienwatch_api;

-- Server-side watchers (cloud/watchers, migration 0007), run by the receiver or the API: they
-- raise and clear their own events (boot_id -1) and keep one row per raised condition.
GRANT INSERT ON events TO lienwatch_api;
GRANT INSERT, UPDATE, DELETE ON watcher_state TO lienwatch_ingest, lienwatch_api;
GRANT INSERT, UPDATE ON event_lifecycle TO lienwatch_api;

-- Emergency override secrets (migration 0008, docs/actuators.md): the API sets them and counts the
-- codes it hands out; the receiver has no business reading them.
GRANT INSERT, UPDATE ON override_secrets TO lienwatch_api;
REVOKE SELECT ON override_secrets FROM lienwatch_ingest;
