-- 0013 packed tracks: the fixes a simplified track can keep, most significant first
-- (cloud/store/track_days.py).
--
-- A simplified month read the whole of 30 packed days (~54 kB each) to keep ~5 % of their rows.
-- `kept` holds the day's fixes whose Douglas-Peucker significance is above 5 m, in the format-1
-- row layout, sorted by significance (highest first); `kept_ladder[i]` counts those above
-- 5 x 2^((i - 1) / 4) m, so a read at tolerance t takes only `substring(kept, 1, 38 * count)` for the
-- ladder step at or below t, and out-of-line storage without compression (EXTERNAL) reads only
-- the TOAST chunks of that prefix. `no_fix_rows` counts the day's rows without a GNSS fix: a day
-- that has any is read whole (its no-fix stretches need every row). NULL in rows packed before
-- this version: those days are read whole until they are packed again.
ALTER TABLE track_days ADD COLUMN kept bytea;
ALTER TABLE track_days ADD COLUMN kept_ladder integer[];
ALTER TABLE track_days ADD COLUMN no_fix_rows integer;
ALTER TABLE track_days ALTER COLUMN kept SET STORAGE EXTERNAL;
