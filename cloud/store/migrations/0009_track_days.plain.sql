-- 0009 packed tracks: one row per device and local day (cloud/store/track_days.py).
--
-- A 30-day track read from `positions` is ~43,000 rows of one device scattered among every other
-- device's rows (one heap page per fix when not cached). The receiver packs each (device, local
-- day) that ingest marked dirty into one value, with every fix's Douglas-Peucker significance, at
-- the moment it recomputes the day's summary; the API reads ~30 values instead. A day that is
-- dirty (or was packed under another time zone) is read from `positions` instead, so a packed row
-- is never stale. Derived from positions, so kept as long as positions (retention class
-- 'positions', cloud/store/layout.py).
-- Plain storage: range-partitioned by month like daily_summaries.
CREATE TABLE track_days (
    device_id  text COLLATE "C" NOT NULL,
    day        date NOT NULL,
    t0         timestamptz NOT NULL,  -- the local day's bounds [t0, t1) in the device's time zone
    t1         timestamptz NOT NULL,
    format     smallint NOT NULL,
    fix_count  integer NOT NULL,
    fixes      bytea NOT NULL,
    packed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, day)
) PARTITION BY RANGE (day);
