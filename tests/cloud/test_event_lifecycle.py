"""Event transitions (protocol 1.1) through the real receiver: every transition stored, open vs cleared."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from cloud.ingest.receiver import Receiver
from cloud.store.db import Conn
from hil.services import MosquittoBroker
from protocol.messages import Event, Header, Severity, Transition
from tests.cloud import test_ingest
from tests.cloud.conftest import register
from tests.cloud.helpers import BASE_NS, Publisher, event, receiver_config
from tests.cloud.test_ingest import count, wait_for

S = 10**9
publisher = test_ingest.publisher  # the fixture: a QoS 1 publisher on the test broker


@pytest.fixture
def receiver(migrated_db: str, mosquitto: MosquittoBroker) -> Iterator[Receiver]:
    rx = Receiver(receiver_config(migrated_db, mosquitto.port, f"rx-{time.monotonic_ns()}",
                                  group=f"g{time.monotonic_ns()}"))
    rx.start()
    yield rx
    rx.stop()


def transition(device: str, seq: int, event_id: int, kind: Transition, severity: Severity,
               at_s: int, **changes: Any) -> Event:
    base = event(device, seq, time_ns=BASE_NS + at_s * S)
    return replace(base, header=Header(device, 1, seq, BASE_NS + at_s * S, base.header.clock_quality),
                   event_id=event_id, severity=severity, transition=kind,
                   raised_ns=None if kind is Transition.RAISED else BASE_NS, condition="jamming", **changes)


def current(db: Conn, device: str) -> list[tuple[Any, ...]]:
    return db.execute("SELECT event_id, state, severity, transitions FROM event_current "
                      "WHERE device_id = %s ORDER BY event_id", (device,)).fetchall()


def lifecycle(db: Conn, device: str) -> list[tuple[Any, ...]]:
    return db.execute("SELECT event_id, state, updated_by FROM event_lifecycle WHERE device_id = %s "
                      "ORDER BY event_id", (device,)).fetchall()


def test_every_transition_is_stored_and_the_cloud_tells_open_from_cleared(
        db: Conn, receiver: Receiver, publisher: Publisher) -> None:
    register(db, "gw-life")
    publisher.send([
        transition("gw-life", 1, 500, Transition.RAISED, Severity.WARNING, 0),
        transition("gw-life", 2, 500, Transition.ESCALATED, Severity.EMERGENCY, 5),
        transition("gw-life", 3, 501, Transition.RAISED, Severity.ALERT, 6),
    ])
    wait_for(lambda: receiver.totals.messages == 3, what="three transitions committed")
    assert current(db, "gw-life") == [(500, "open", "EMERGENCY", 2), (501, "open", "ALERT", 1)]
    assert lifecycle(db, "gw-life") == [(500, "open", None), (501, "open", None)]
    publisher.send([transition("gw-life", 4, 500, Transition.CLEARED, Severity.EMERGENCY, 60)])
    wait_for(lambda: receiver.totals.messages == 4, what="the clear committed")
    assert current(db, "gw-life") == [(500, "cleared", "EMERGENCY", 3), (501, "open", "ALERT", 1)]
    assert lifecycle(db, "gw-life") == [(500, "resolved", "device"), (501, "open", None)]
    rows = db.execute("SELECT transition, raised_at IS NOT NULL, condition FROM events "
                      "WHERE device_id = 'gw-life' AND event_id = 500 ORDER BY time").fetchall()
    assert rows == [("raised", False, "jamming"), ("escalated", True, "jamming"),
                    ("cleared", True, "jamming")]


def test_a_clear_that_overtakes_its_raise_still_resolves_it(
        db: Conn, receiver: Receiver, publisher: Publisher) -> None:
    register(db, "gw-order")
    publisher.send([transition("gw-order", 2, 700, Transition.CLEARED, Severity.ALERT, 30)])
    wait_for(lambda: receiver.totals.messages == 1, what="the clear committed")
    publisher.send([transition("gw-order", 1, 700, Transition.RAISED, Severity.ALERT, 0)])
    wait_for(lambda: receiver.totals.messages == 2, what="the raise committed")
    assert lifecycle(db, "gw-order") == [(700, "resolved", "device")]
    publisher.send([transition("gw-order", 4, 701, Transition.RAISED, Severity.ALERT, 40),
                    transition("gw-order", 5, 701, Transition.CLEARED, Severity.ALERT, 50)])
    wait_for(lambda: receiver.totals.messages == 4, what="raise and clear in one batch")
    assert lifecycle(db, "gw-order") == [(700, "resolved", "device"), (701, "resolved", "device")]
    assert count(db, "events") >= 4


def test_a_version_1_0_event_is_a_raised_one(db: Conn, receiver: Receiver, publisher: Publisher) -> None:
    from protocol import golden
    from protocol.messages import MessageKind
    from protocol.topics import uplink_topic

    register(db, "veh-0001")
    old = (golden.VECTOR_DIR / "event_v1_0.cbor").read_bytes()  # the bytes a 1.0 agent sent
    publisher.publish([(uplink_topic(MessageKind.EVENT, "veh-0001"), old)])
    wait_for(lambda: receiver.totals.messages == 1, what="the 1.0 event committed")
    assert current(db, "veh-0001") == [(90017, "open", "EMERGENCY", 1)]
