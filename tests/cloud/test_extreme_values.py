"""Numbers at the edges of what CBOR can carry, in every numeric field of every uplink golden
vector: the protocol refuses them, or the receiver stores them (or keeps the message as rejected
with the database's reason), and the daily summaries it then refreshes still compute. A value
PostgreSQL cannot hold must never stop the write path or the maintenance after it."""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import cbor2
import psycopg
import pytest

import protocol
from cloud.ingest.validate import Incoming, Validator
from cloud.ingest.writer import BatchWriter
from cloud.store import summaries
from cloud.store.db import Conn
from cloud.store.partitions import PartitionKeeper
from cloud.store.retention import RetentionPolicy
from protocol.errors import ProtocolError
from protocol.messages import KIND_OF, CommandAck, Event, Status, TelemetryBatch
from protocol.topics import uplink_topic
from tests.cloud.conftest import register

VECTORS = pathlib.Path(protocol.__file__).parent / "vectors"
EXTREMES: tuple[float | int, ...] = (5e-324, -5e-324, 1e-300, 3.5e38, 1e300, -1e300,
                                     2**63 - 1, -(2**63), 2**64 - 1)
UPLINK = (TelemetryBatch, Event, Status, CommandAck)
Uplink = TelemetryBatch | Event | Status | CommandAck


def _numbers(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(obj, bool):
        return
    if isinstance(obj, int | float):
        yield path, obj
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _numbers(item, (*path, i))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _numbers(value, (*path, key))
    elif isinstance(obj, cbor2.CBORTag):
        yield from _numbers(obj.value, (*path, "tag"))


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == "tag" and isinstance(obj, cbor2.CBORTag):
        return cbor2.CBORTag(obj.tag, _replace(obj.value, rest, value))
    copy = list(obj) if isinstance(obj, list) else dict(obj)
    copy[head] = _replace(copy[head], rest, value)
    return copy


def _mutants() -> Iterator[tuple[str, bytes]]:
    for vector in sorted(VECTORS.glob("*.cbor")):
        data = vector.read_bytes()
        try:
            if not isinstance(protocol.decode(data), UPLINK):
                continue
        except ProtocolError:
            continue
        raw = cbor2.loads(data)
        for path, _ in _numbers(raw):
            for extreme in EXTREMES:
                yield f"{vector.stem}{list(path)}={extreme}", cbor2.dumps(_replace(raw, path, extreme))


def test_extreme_numbers_are_refused_or_stored_never_stop_the_receiver(db: Conn) -> None:
    writer = BatchWriter(db, mode="plain", receiver_id="test", policy=RetentionPolicy())
    registered: set[str] = set()
    validator = Validator(lambda d: d in registered, lambda table: 0, 10**18, time.time_ns)
    stored: list[str] = []
    refused = 0
    for seq, (name, payload) in enumerate(_mutants()):
        try:
            decoded = protocol.decode(payload)
        except ProtocolError:
            refused += 1
            continue
        assert isinstance(decoded, UPLINK), name
        message: Uplink = decoded
        if message.header.device_id not in registered:
            register(db, message.header.device_id)
            registered.add(message.header.device_id)
        message = dataclasses.replace(message, header=dataclasses.replace(message.header, seq=10_000 + seq))
        topic = uplink_topic(KIND_OF[type(message)], message.header.device_id)
        incoming = Incoming(topic, protocol.encode(message), seq, 1, time.time_ns())
        outcome = validator.check(incoming)
        if hasattr(outcome, "reason_code"):
            refused += 1
            continue
        try:
            writer.write([outcome], datetime.now(UTC))
        except psycopg.Error as error:
            pytest.fail(f"{name}: accepted by the protocol, refused by the database: {error}")
        stored.append(name)
    assert refused > 1000 and len(stored) > 50, (refused, len(stored))
    # evidence keeps the extremes as sent (jsonb numbers are numeric: no float range to leave)
    extremes = db.execute(
        "SELECT max(v.value::numeric), min(v.value::numeric), min(abs(v.value::numeric)) FILTER "
        "(WHERE v.value::numeric <> 0) FROM events, jsonb_each(evidence) v "
        "WHERE jsonb_typeof(v.value) = 'number'").fetchone()
    assert extremes is not None and [float(x) for x in extremes] == [1e300, -1e300, 5e-324]
    days = [row[0] for row in db.execute("SELECT DISTINCT day FROM summary_dirty").fetchall()]
    assert days
    for table in ("track_days", "daily_summaries"):
        PartitionKeeper().ensure(db, table, min(days), max(days))
    summaries.refresh_dirty(db, oldest_day=date(2000, 1, 1))
    assert db.execute("SELECT count(*) FROM summary_dirty").fetchone() == (0,)
