-- 0010 the API's list reads (cloud/store/alerts.py, cloud/store/fleet.py), both storage modes:
-- a partitioned table (plain) and a hypertable (TimescaleDB) take the same CREATE INDEX, made on
-- every partition or chunk. event_lifecycle holds one row per raised event, so these indexes cost
-- the ingest rate nothing that matters (the telemetry tables keep their one index each).

-- GET /events pages newest first by (event_time, device_id, event_id) DESC, the keyset of its
-- cursor: read backwards, this index gives the page in order and stops after `limit` rows, in
-- place of a scan and sort of every lifecycle row.
CREATE INDEX event_lifecycle_list_order ON event_lifecycle (event_time, device_id, event_id);

-- GET /devices counts each listed device's open and acknowledged events and their highest
-- severity: an index-only read of the few open rows, not a filter over all of the device's events.
CREATE INDEX event_lifecycle_open_by_device ON event_lifecycle (device_id, event_id)
    WHERE state IN ('open', 'acknowledged');

-- A record that the device sends raised and cleared at once (a CLEARED transition whose
-- raised_at is its own time and that has no RAISED row: the starter interrupt's changes,
-- docs/actuators.md) got no lifecycle row before this version, so GET /events did not list it.
-- The receiver now gives it one, resolved by the device (cloud/ingest/writer.py); these are the
-- ones stored before. Their partitions exist: the receiver makes event_lifecycle's with events'.
INSERT INTO event_lifecycle (device_id, event_time, boot_id, seq, event_id, state, updated_at, updated_by,
                             note)
SELECT e.device_id, e.time, e.boot_id, e.seq, e.event_id, 'resolved', e.time, 'device', e.detail
FROM events e
WHERE e.transition = 'cleared' AND e.raised_at = e.time
  AND NOT EXISTS (SELECT 1 FROM events x WHERE x.device_id = e.device_id AND x.event_id = e.event_id
                                          AND x.transition = 'raised')
  AND NOT EXISTS (SELECT 1 FROM event_lifecycle l WHERE l.device_id = e.device_id
                                                   AND l.event_id = e.event_id)
ON CONFLICT DO NOTHING;
