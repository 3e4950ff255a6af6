-- Event lifecycle on the wire (protocol 1.1): an event id is raised once, may be escalated
-- (higher severity, new evidence) and is cleared once. Every transition is its own message and
-- so its own row of `events`; `event_lifecycle` keeps one row per raised event, 'open' until the
-- device clears it ('resolved', updated_by 'device') or an operator acknowledges or dismisses it.
-- Events of protocol 1.0 are 'raised'.
ALTER TABLE events ADD COLUMN transition text NOT NULL DEFAULT 'raised'
    CHECK (transition IN ('raised', 'escalated', 'cleared'));
ALTER TABLE events ADD COLUMN raised_at timestamptz;
ALTER TABLE events ADD COLUMN condition text NOT NULL DEFAULT '';
CREATE INDEX events_device_event_id ON events (device_id, event_id, time);

ALTER TABLE event_lifecycle ADD COLUMN event_id bigint;
UPDATE event_lifecycle l SET event_id = e.event_id FROM events e
    WHERE e.device_id = l.device_id AND e.time = l.event_time AND e.boot_id = l.boot_id AND e.seq = l.seq;
CREATE INDEX event_lifecycle_device_event_id ON event_lifecycle (device_id, event_id);

-- One row per event id: where it is in its life, its highest severity, when it changed last.
CREATE VIEW event_current AS
SELECT device_id, event_id,
       min(detector) AS detector,
       min(condition) AS condition,
       min(time) FILTER (WHERE transition = 'raised') AS raised_at,
       max(time) AS updated_at,
       CASE max(CASE severity WHEN 'WARNING' THEN 1 WHEN 'ALERT' THEN 2 ELSE 3 END)
           WHEN 1 THEN 'WARNING' WHEN 2 THEN 'ALERT' ELSE 'EMERGENCY' END AS severity,
       CASE WHEN bool_or(transition = 'cleared') THEN 'cleared' ELSE 'open' END AS state,
       count(*) AS transitions
FROM events
GROUP BY device_id, event_id;
