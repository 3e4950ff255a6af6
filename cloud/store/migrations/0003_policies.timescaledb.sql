-- 0003 TimescaleDB policies as a cloud operator runs them (upgrades a 0002 database in place).
-- Every policy below exists from the moment the schema does; `lienwatch cloud ingest` only
-- re-applies a changed [retention] configuration, with alter_job (cloud/store/retention.py),
-- so job ids and job history stay. docs/cloud.md says what each policy does and why.
-- The retention and refresh intervals are cloud/store/retention.py DEFAULT_DAYS (a test checks):
-- necessary data (positions, events, summaries) 1825 days, raw telemetry 90 days, rejects 30.

-- One index per hypertable: create_hypertable made a (time DESC) index beside the unique key
-- (0002 did not pass create_default_indexes => false). The unique key starts with
-- (device_id, time) and serves every query; the extra index only cost ingest rate.
DROP INDEX IF EXISTS positions_time_idx;
DROP INDEX IF EXISTS signal_samples_time_idx;
DROP INDEX IF EXISTS events_time_idx;
DROP INDEX IF EXISTS event_lifecycle_event_time_idx;
DROP INDEX IF EXISTS device_status_time_idx;
DROP INDEX IF EXISTS command_acks_time_idx;
DROP INDEX IF EXISTS rejected_messages_received_at_idx;
DROP INDEX IF EXISTS daily_summaries_day_idx;

-- Compression: every column of the unique key is a segmentby or orderby column (min/max metadata
-- per batch), so a duplicate check (a redelivery, or late store-and-forward rows) in a compressed
-- chunk decompresses only batches that may hold the key. Signals stay segmented by device alone:
-- segmenting by (device, signal) was measured (docs/cloud.md) to make such checks 7x slower with
-- 40 signals, because signal_id is not in the unique key, so every signal's segment must be
-- searched; per-signal history is read from signal_hourly. Chunks compressed before this
-- migration keep their old settings until recompressed; new compressions use these.
ALTER TABLE positions SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                           timescaledb.compress_orderby = 'time DESC, boot_id, seq, row_idx');
ALTER TABLE signal_samples SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                                timescaledb.compress_orderby = 'time DESC, boot_id, seq, row_idx');
ALTER TABLE device_status SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                               timescaledb.compress_orderby = 'time DESC, boot_id, seq');

-- signal_hourly is real-time: materialized buckets plus the raw rows above the materialization
-- watermark, so the newest hour is visible at once (as the plain-mode view is).
ALTER MATERIALIZED VIEW signal_hourly SET (timescaledb.materialized_only = false);

-- Its refresh window reaches back as far as signals are kept (90 days), so store-and-forward
-- data weeks old is aggregated by the next run (every 30 minutes). A refresh recomputes only the
-- buckets the invalidation log marks as changed, so the wide window costs nothing when no late
-- data arrived. alter_job keeps the job 0002 created (its id and history).
SELECT alter_job(job_id, config => config || jsonb_build_object('start_offset', '90 days'))
FROM timescaledb_information.jobs
WHERE proc_name = 'policy_refresh_continuous_aggregate'
  AND hypertable_schema = current_schema() AND hypertable_name = 'signal_hourly';
SELECT add_continuous_aggregate_policy('signal_hourly',
    start_offset => INTERVAL '90 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => true);

-- Retention by data class, dropping whole chunks. if_not_exists leaves a policy that a receiver
-- already configured alone (the receiver reconciles it with its own configuration).
SELECT add_retention_policy('signal_samples', drop_after => INTERVAL '90 days', if_not_exists => true);
SELECT add_retention_policy('device_status', drop_after => INTERVAL '90 days', if_not_exists => true);
SELECT add_retention_policy('positions', drop_after => INTERVAL '1825 days', if_not_exists => true);
SELECT add_retention_policy('events', drop_after => INTERVAL '1825 days', if_not_exists => true);
SELECT add_retention_policy('event_lifecycle', drop_after => INTERVAL '1825 days', if_not_exists => true);
SELECT add_retention_policy('command_acks', drop_after => INTERVAL '1825 days', if_not_exists => true);
SELECT add_retention_policy('daily_summaries', drop_after => INTERVAL '1825 days', if_not_exists => true);
SELECT add_retention_policy('rejected_messages', drop_after => INTERVAL '30 days', if_not_exists => true);
-- The hourly aggregate is signal data too: kept as long as the raw signals, no longer.
SELECT add_retention_policy('signal_hourly', drop_after => INTERVAL '90 days', if_not_exists => true);
