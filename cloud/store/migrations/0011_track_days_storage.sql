-- 0011 packed tracks stored out of line WITHOUT compression (cloud/store/track_days.py).
-- A packed day is ~53 kB of float columns that pglz squeezes to ~35 kB, but every track read
-- then decompresses a month of them in the server: ~10 ms of CPU a 30-day read, most of the
-- read's cost (bench/api.py). EXTERNAL keeps them out of line and reads them as they are.
-- Plain partitions and TimescaleDB chunks inherit the column's storage when they are created;
-- ALTER TABLE recurses to the existing ones. Rows already stored keep their form until repacked.
ALTER TABLE track_days ALTER COLUMN fixes SET STORAGE EXTERNAL;
