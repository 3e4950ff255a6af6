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
-- * event_ranks: the highest severity (1 WARNING, 2 ALERT, 3 EMERGENCY) of each (device, event id)
--   over its rows (raised, escalated, cleared), kept by a trigger on events with an upsert on its
--   primary key: two transactions writing rows of the same event (two receivers) wait for each
--   other there, so the greatest rank is never lost.
-- * open_events: one row per lifecycle row in state open or acknowledged, with its event's rank.
--   A trigger on event_lifecycle keeps the rows, so every writer of lifecycle rows (the receiver,
--   the API's acknowledge/resolve, the watchers) and every future one keeps them right without
--   knowing of them. A lifecycle row is inserted in the transaction that stores its event's first
--   row (the receiver, the watchers): a later row of the same event in another transaction (an
--   escalation) waits on event_ranks for that transaction, then raises the rank of the committed
--   open_events row. A lifecycle row that stays open (acknowledged) is not rewritten.
--
-- The triggers run as the owner (SECURITY DEFINER): the receiver's and the API's roles get no
-- write privilege on these tables. Rows whose lifecycle partition was dropped by retention (a
-- trigger does not see a dropped partition or chunk) are removed by `lienwatch cloud maintain`
-- (fleet.reconcile_open_events), as are the ranks of events no longer open.

ALTER TABLE device_latest ADD COLUMN power_state text;
ALTER TABLE device_latest ADD COLUMN status_time timestamptz;

CREATE TABLE event_ranks (
    device_id text COLLATE "C" NOT NULL,
    event_id  bigint NOT NULL,
    rank      smallint NOT NULL CHECK (rank BETWEEN 1 AND 3),
    PRIMARY KEY (device_id, event_id)
);

CREATE TABLE open_events (
    device_id  text COLLATE "C" NOT NULL,
    event_time timestamptz NOT NULL,
    boot_id    bigint NOT NULL,
    seq        bigint NOT NULL,
    event_id   bigint,
    rank       smallint CHECK (rank BETWEEN 1 AND 3),  -- NULL: no event row with this id
    PRIMARY KEY (device_id, event_time, boot_id, seq)
);

CREATE FUNCTION lienwatch_severity_rank(severity text) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE severity WHEN 'WARNING' THEN 1 WHEN 'ALERT' THEN 2 ELSE 3 END;

CREATE FUNCTION lienwatch_follow_events() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    new_rank smallint := lienwatch_severity_rank(NEW.severity);
BEGIN
    INSERT INTO event_ranks AS r (device_id, event_id, rank)
    VALUES (NEW.device_id, NEW.event_id, new_rank)
    ON CONFLICT (device_id, event_id) DO UPDATE SET rank = EXCLUDED.rank
    WHERE r.rank < EXCLUDED.rank;
    UPDATE open_events SET rank = new_rank
    WHERE device_id = NEW.device_id AND event_id = NEW.event_id AND (rank IS NULL OR rank < new_rank);
    RETURN NULL;
END $$;

CREATE FUNCTION lienwatch_follow_lifecycle() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    was_open boolean := TG_OP <> 'INSERT' AND OLD.state IN ('open', 'acknowledged');
    is_open boolean := TG_OP <> 'DELETE' AND NEW.state IN ('open', 'acknowledged');
BEGIN
    IF was_open AND is_open
       AND (OLD.device_id, OLD.event_time, OLD.boot_id, OLD.seq, OLD.event_id)
           IS NOT DISTINCT FROM (NEW.device_id, NEW.event_time, NEW.boot_id, NEW.seq, NEW.event_id) THEN
        RETURN NULL;  -- open -> acknowledged: the row stays as it is
    END IF;
    IF was_open THEN
        DELETE FROM open_events
        WHERE device_id = OLD.device_id AND event_time = OLD.event_time AND boot_id = OLD.boot_id
          AND seq = OLD.seq;
    END IF;
    IF is_open THEN
        INSERT INTO open_events (device_id, event_time, boot_id, seq, event_id, rank)
        SELECT NEW.device_id, NEW.event_time, NEW.boot_id, NEW.seq, NEW.event_id,
               (SELECT r.rank FROM event_ranks r WHERE r.device_id = NEW.device_id AND r.event_id = NEW.event_id)
        ON CONFLICT (device_id, event_time, boot_id, seq) DO UPDATE
            SET event_id = EXCLUDED.event_id, rank = EXCLUDED.rank;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER event_ranks_follow AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION lienwatch_follow_events();
CREATE TRIGGER open_events_follow AFTER INSERT OR UPDATE OR DELETE ON event_lifecycle
    FOR EACH ROW EXECUTE FUNCTION lienwatch_follow_lifecycle();

-- What is stored already.
INSERT INTO event_ranks (device_id, event_id, rank)
SELECT e.device_id, e.event_id, max(lienwatch_severity_rank(e.severity)) FROM events e
WHERE EXISTS (SELECT 1 FROM event_lifecycle l WHERE l.device_id = e.device_id AND l.event_id = e.event_id
              AND l.state IN ('open', 'acknowledged'))
GROUP BY e.device_id, e.event_id;
INSERT INTO open_events (device_id, event_time, boot_id, seq, event_id, rank)
SELECT l.device_id, l.event_time, l.boot_id, l.seq, l.event_id, r.rank FROM event_lifecycle l
LEFT JOIN event_ranks r ON r.device_id = l.device_id AND r.event_id = l.event_id
WHERE l.state IN ('open', 'acknowledged');
INSERT INTO device_latest AS l (device_id, power_state, status_time)
SELECT DISTINCT ON (device_id) device_id, power_state, time FROM device_status
ORDER BY device_id, time DESC
ON CONFLICT (device_id) DO UPDATE SET power_state = EXCLUDED.power_state, status_time = EXCLUDED.status_time;
