-- 0014 the device list without reading the time series (cloud/store/fleet.py), both storage modes.
--
-- GET /devices showed each device's power state (its latest device_status row), its open and
-- acknowledged events and their highest severity by looking into every partition (or chunk) of
-- device_status, event_lifecycle and events for each listed device: a page of 100 devices cost
-- thousands of index probes, growing with every month of history kept. These rows are the same
-- facts, kept current as they are written:
--
-- * device_latest.power_state / status_time: the device's newest status (cloud/ingest/writer.py,
--   the only writer of device_status, upserts them with the batch).
-- * open_events: one row per lifecycle row in state open or acknowledged. A trigger on
--   event_lifecycle keeps it: every writer of lifecycle rows (the receiver, the API's
--   acknowledge/resolve, the watchers) and every future one keeps it right without knowing of it.
-- * event_ranks: the highest severity (1 WARNING, 2 ALERT, 3 EMERGENCY) of each (device, event id)
--   over its rows (raised, escalated, cleared), kept by a trigger on events. An upsert on its
--   primary key: two transactions writing rows of the same event (two receivers) wait for each
--   other there, so the greatest rank is never lost; the lifecycle row is not involved.
--
-- The triggers run as the owner (SECURITY DEFINER): the receiver's and the API's roles get no
-- write privilege on these tables. Rows whose lifecycle or events partition was dropped by
-- retention (a trigger does not see a dropped partition or chunk) are removed by
-- `lienwatch cloud maintain` (fleet.reconcile_open_events), as are ranks of closed events.

ALTER TABLE device_latest ADD COLUMN power_state text;
ALTER TABLE device_latest ADD COLUMN status_time timestamptz;

CREATE TABLE open_events (
    device_id  text COLLATE "C" NOT NULL,
    event_time timestamptz NOT NULL,
    boot_id    bigint NOT NULL,
    seq        bigint NOT NULL,
    event_id   bigint,
    PRIMARY KEY (device_id, event_time, boot_id, seq)
);

CREATE TABLE event_ranks (
    device_id text COLLATE "C" NOT NULL,
    event_id  bigint NOT NULL,
    rank      smallint NOT NULL CHECK (rank BETWEEN 1 AND 3),
    PRIMARY KEY (device_id, event_id)
);

CREATE FUNCTION lienwatch_severity_rank(severity text) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE severity WHEN 'WARNING' THEN 1 WHEN 'ALERT' THEN 2 ELSE 3 END;

CREATE FUNCTION lienwatch_follow_lifecycle() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM open_events
        WHERE device_id = OLD.device_id AND event_time = OLD.event_time AND boot_id = OLD.boot_id
          AND seq = OLD.seq;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.state IN ('open', 'acknowledged') THEN
        INSERT INTO open_events (device_id, event_time, boot_id, seq, event_id)
        VALUES (NEW.device_id, NEW.event_time, NEW.boot_id, NEW.seq, NEW.event_id)
        ON CONFLICT (device_id, event_time, boot_id, seq) DO UPDATE SET event_id = EXCLUDED.event_id;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION lienwatch_follow_events() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO event_ranks AS r (device_id, event_id, rank)
    VALUES (NEW.device_id, NEW.event_id, lienwatch_severity_rank(NEW.severity))
    ON CONFLICT (device_id, event_id) DO UPDATE SET rank = EXCLUDED.rank
    WHERE r.rank < EXCLUDED.rank;
    RETURN NULL;
END $$;

CREATE TRIGGER open_events_follow AFTER INSERT OR UPDATE OR DELETE ON event_lifecycle
    FOR EACH ROW EXECUTE FUNCTION lienwatch_follow_lifecycle();
CREATE TRIGGER event_ranks_follow AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION lienwatch_follow_events();

-- What is stored already.
INSERT INTO open_events (device_id, event_time, boot_id, seq, event_id)
SELECT device_id, event_time, boot_id, seq, event_id FROM event_lifecycle
WHERE state IN ('open', 'acknowledged');
INSERT INTO event_ranks (device_id, event_id, rank)
SELECT e.device_id, e.event_id, max(lienwatch_severity_rank(e.severity)) FROM events e
WHERE EXISTS (SELECT 1 FROM open_events o WHERE o.device_id = e.device_id AND o.event_id = e.event_id)
GROUP BY e.device_id, e.event_id;
INSERT INTO device_latest AS l (device_id, power_state, status_time)
SELECT DISTINCT ON (device_id) device_id, power_state, time FROM device_status
ORDER BY device_id, time DESC
ON CONFLICT (device_id) DO UPDATE SET power_state = EXCLUDED.power_state, status_time = EXCLUDED.status_time;
