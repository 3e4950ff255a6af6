-- 0003 plain PostgreSQL: nothing to upgrade. The TimescaleDB variant of this migration adds the
-- background policies (retention, compression order, a real-time aggregate); in plain mode the
-- receiver drops expired partitions itself (cloud/store/retention.py) and signal_hourly is a view,
-- always live and never stale.
COMMENT ON VIEW signal_hourly IS
    'Hourly roll-up of signal_samples (plain mode: a view, always live; TimescaleDB: a real-time continuous aggregate).';
