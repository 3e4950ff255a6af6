-- The driving detector's daily counters, reported by the device in its Status (protocol 1.1,
-- key 13) and merged into the day's summary row by the receiver with GREATEST: the counters are
-- cumulative over a local day, so the highest report is the latest, whatever the arrival order.
-- harsh_*_count (0002) take the same reports.
ALTER TABLE daily_summaries ADD COLUMN overspeed_count integer NOT NULL DEFAULT 0;
ALTER TABLE daily_summaries ADD COLUMN overspeed_s integer NOT NULL DEFAULT 0;
ALTER TABLE daily_summaries ADD COLUMN idle_long_count integer NOT NULL DEFAULT 0;
ALTER TABLE daily_summaries ADD COLUMN idle_long_s integer NOT NULL DEFAULT 0;
