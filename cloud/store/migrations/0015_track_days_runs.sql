-- 0015 packed tracks: the day's motion runs, what trips and stops are made of
-- (cloud/analytics/motion.py, cloud/store/track_days.py).
--
-- A month of trips read every packed fix of the month (1.2 MB at one fix a minute, 78 MB at one
-- a second) to classify each segment. `runs` holds the day's runs of equal segments (stopped,
-- moving, data gap) under the default classification, with the first and last fixed rows and the
-- ignition value the day started with: a few hundred bytes a day. NULL in rows packed before
-- this version: those days are read from their fixes until they are packed again.
ALTER TABLE track_days ADD COLUMN runs bytea;
