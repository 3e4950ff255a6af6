"""The device list's current state (migration 0014: device_latest.power_state, open_events,
event_ranks) equals what the time series say, whoever writes them and in whatever order."""

from __future__ import annotations

import contextlib
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud.store import alerts, fleet
from cloud.store.db import Conn, connect
from cloud.watchers.store import EventWriter, Finding
from protocol.messages import PowerState, Severity, Transition
from tests.cloud.api.conftest import NOW_NS, event, register, status, store

S = 10**9
NOW = datetime.fromtimestamp(NOW_NS / S, UTC)
DEVICES = [f"veh-{i}" for i in range(4)]
RANKS = {"WARNING": 1, "ALERT": 2, "EMERGENCY": 3}

# What the device list showed before 0014, read from the time series themselves: the oracle.
_ORACLE = """
SELECT d.device_id,
       (SELECT power_state FROM device_status s WHERE s.device_id = d.device_id
        ORDER BY s.time DESC, s.boot_id DESC, s.seq DESC LIMIT 1),
       (SELECT count(*) FROM event_lifecycle lc
        WHERE lc.device_id = d.device_id AND lc.state IN ('open', 'acknowledged')),
       (SELECT max(CASE e.severity WHEN 'WARNING' THEN 1 WHEN 'ALERT' THEN 2 ELSE 3 END)
        FROM event_lifecycle lc JOIN events e ON e.device_id = lc.device_id AND e.event_id = lc.event_id
        WHERE lc.device_id = d.device_id AND lc.state IN ('open', 'acknowledged'))
FROM devices d ORDER BY d.device_id"""


def listed(db: Conn) -> list[tuple[Any, ...]]:
    rows = fleet.list_fleet(db, fleet.DeviceFilter(limit=500), NOW, timedelta(hours=1))
    return [(r["device_id"], r["power_state"], r["open_events"],
             RANKS[r["open_max_severity"]] if r["open_max_severity"] else None) for r in rows]


def oracle(db: Conn) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in db.execute(_ORACLE).fetchall()]


def test_the_list_follows_every_writer_in_any_order(db: Conn) -> None:
    """Random raises, escalations, clears (receiver), acknowledgements and resolutions (API),
    watcher raises and clears, statuses late and out of order: after every step the list's power
    state, open count and highest open severity equal the oracle's."""
    for device in DEVICES:
        register(db, device)
    rng = random.Random(14)
    raised: dict[str, list[int]] = {d: [] for d in DEVICES}
    watchers = EventWriter(db)
    severities = list(Severity)
    for step, seq in enumerate(range(1, 121)):
        device = rng.choice(DEVICES)
        at = NOW_NS - rng.randrange(0, 20 * 86_400) * S  # up to 20 days back: two partitions
        kind = rng.choice(["raise", "escalate", "clear", "ack", "resolve", "status", "watcher", "unwatch"])
        if kind == "raise" or (kind in ("escalate", "clear") and not raised[device]):
            event_id = 1000 + seq
            raised[device].append(event_id)
            store(db, [event(device, seq, event_id, at, rng.choice(severities))])
        elif kind in ("escalate", "clear"):
            event_id = rng.choice(raised[device])
            store(db, [event(device, seq, event_id, at, rng.choice(severities),
                             transition=Transition.ESCALATED if kind == "escalate" else Transition.CLEARED)])
        elif kind in ("ack", "resolve"):
            # resolving a resolved event is refused (TransitionError) and changes nothing
            with contextlib.suppress(alerts.TransitionError):
                if raised[device]:
                    alerts.transition(db, device, rng.choice(raised[device]),
                                      "acknowledge" if kind == "ack" else "resolve", "ops", "", NOW)
        elif kind == "status":
            store(db, [status(device, seq, at, rng.choice(list(PowerState)))])
        elif kind == "watcher":
            watchers.raise_event(device, "offline", "ALERT", _finding(), NOW + timedelta(seconds=step))
        else:
            watchers.clear_event(device, "offline", "back", NOW + timedelta(seconds=step))
        assert listed(db) == oracle(db), f"step {step}: {kind} of {device}"
    assert any(r[2] for r in listed(db)) and any(r[1] for r in listed(db))  # the run reached both


def _finding() -> Finding:
    return Finding("silent for 48 h")


def test_severity_filter_and_counts_come_from_the_kept_state(db: Conn) -> None:
    register(db, "veh-a")
    register(db, "veh-b")
    store(db, [event("veh-a", 1, 7, NOW_NS - 60 * S, Severity.WARNING),
               event("veh-b", 2, 8, NOW_NS - 60 * S, Severity.WARNING)])
    store(db, [event("veh-a", 3, 7, NOW_NS - 30 * S, Severity.EMERGENCY, transition=Transition.ESCALATED)])
    emergency = fleet.list_fleet(db, fleet.DeviceFilter(min_severity="EMERGENCY"), NOW, timedelta(hours=1))
    assert [r["device_id"] for r in emergency] == ["veh-a"]
    assert emergency[0]["open_events"] == 1 and emergency[0]["open_max_severity"] == "EMERGENCY"


def test_an_older_status_arriving_late_does_not_replace_the_newest(db: Conn) -> None:
    register(db, "veh-s")
    store(db, [status("veh-s", 2, NOW_NS - 10 * S, PowerState.DEEP_SLEEP)])
    store(db, [status("veh-s", 1, NOW_NS - 3600 * S, PowerState.ACTIVE)])  # store-and-forward backlog
    assert listed(db) == oracle(db) == [("veh-s", "DEEP_SLEEP", 0, None)]


def test_two_writers_of_one_event_never_lose_the_highest_severity(migrated_db: str) -> None:
    """A raise (WARNING) and its escalation (EMERGENCY) in two open transactions (two receivers):
    the second waits for the first on the event's rank row, and the rank ends at EMERGENCY."""
    with connect(migrated_db) as setup:
        register(setup, "veh-c")
    first, second = connect(migrated_db), connect(migrated_db)
    try:
        first.autocommit = second.autocommit = False
        store(first, [event("veh-c", 1, 9, NOW_NS - 60 * S, Severity.WARNING)])
        done = threading.Event()

        def escalate() -> None:
            store(second, [event("veh-c", 2, 9, NOW_NS - 30 * S, Severity.EMERGENCY,
                                 transition=Transition.ESCALATED)])
            done.set()

        worker = threading.Thread(target=escalate)
        worker.start()
        assert not done.wait(0.5), "the escalation did not wait for the raise's transaction"
        first.commit()
        worker.join(10)
        assert done.is_set()
        second.commit()
        with connect(migrated_db) as check:
            assert listed(check) == oracle(check) == [("veh-c", None, 1, 3)]
    finally:
        first.close()
        second.close()


def test_an_escalation_while_an_operator_acknowledges_keeps_its_severity(migrated_db: str) -> None:
    """The API acknowledges (lifecycle row locked, open -> acknowledged) while a receiver stores an
    escalation of the same event in another transaction: both commit, the rank is the escalation's."""
    with connect(migrated_db) as setup:
        register(setup, "veh-k")
        store(setup, [event("veh-k", 1, 5, NOW_NS - 60 * S, Severity.WARNING)])
    operator, receiver = connect(migrated_db), connect(migrated_db)
    try:
        operator.autocommit = receiver.autocommit = False
        operator.execute("UPDATE event_lifecycle SET state = 'acknowledged' WHERE device_id = 'veh-k'")
        store(receiver, [event("veh-k", 2, 5, NOW_NS - 30 * S, Severity.EMERGENCY,
                               transition=Transition.ESCALATED)])
        receiver.commit()
        operator.commit()
        with connect(migrated_db) as check:
            assert listed(check) == oracle(check) == [("veh-k", None, 1, 3)]
    finally:
        operator.close()
        receiver.close()


@pytest.mark.plain_only
def test_maintain_removes_open_events_retention_dropped(db: Conn, migrated_db: str) -> None:
    """Dropping a lifecycle partition fires no trigger: `reconcile_open_events` (run by
    `lienwatch cloud maintain`) removes what it left in the list; ranks of closed events go too."""
    register(db, "veh-r")
    old_ns = int((NOW - timedelta(days=40)).timestamp()) * S
    store(db, [event("veh-r", 1, 1, old_ns, Severity.EMERGENCY), event("veh-r", 2, 2, NOW_NS - S)])
    store(db, [event("veh-r", 3, 3, NOW_NS - S, Severity.WARNING),
               event("veh-r", 4, 3, NOW_NS, Severity.WARNING, transition=Transition.CLEARED)])
    assert listed(db) == oracle(db) == [("veh-r", None, 2, 3)]
    old = (NOW - timedelta(days=40)).strftime("event_lifecycle_p%Y%m01")
    db.execute(f"ALTER TABLE event_lifecycle DETACH PARTITION {old}")  # type: ignore[arg-type]
    db.execute(f"DROP TABLE {old}")  # type: ignore[arg-type]
    assert listed(db) != oracle(db)  # what a trigger cannot see
    assert fleet.reconcile_open_events(db) == (1, 2)  # event 1's row; ranks of events 1 and 3
    assert listed(db) == oracle(db) == [("veh-r", None, 1, 2)]
    assert fleet.reconcile_open_events(db) == (0, 0)
