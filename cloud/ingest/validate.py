"""Turn one received MQTT message into an accepted protocol message or a rejection with a reason.

Checks, in order: payload size, topic layout, decoding (all of `protocol`'s validation), message
kind and device id against the topic, device registration, and the time range of every row
(rows older than their retention horizon or stamped too far in the future have no partition to
go to and would be dropped by retention anyway: the message is rejected, never silently dropped).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import protocol
from protocol.errors import ProtocolError
from protocol.limits import MAX_MESSAGE_BYTES
from protocol.messages import KIND_OF, CommandAck, Event, Status, TelemetryBatch, UplinkMessage
from protocol.topics import check_message_topic, parse_topic


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message as the MQTT thread received it: nothing is decoded on that thread."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ns: int  # wall clock, UTC ns
    generation: int = 0  # MQTT connection it arrived on (acks only go back on the same one)


@dataclass(frozen=True, slots=True)
class Accepted:
    incoming: Incoming
    message: UplinkMessage
    rows: int


@dataclass(frozen=True, slots=True)
class Rejected:
    incoming: Incoming
    reason_code: str
    reason: str
    claimed_device_id: str | None


Outcome = Accepted | Rejected
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def reason_code_of(error: Exception) -> str:
    """`PayloadTooLargeError` -> `payload_too_large`: one stable label per refusal class."""
    name = type(error).__name__.removesuffix("Error")
    code = _CAMEL.sub("_", name).lower()
    return "bad_topic" if code == "topic" else code


def time_ranges_ns(message: UplinkMessage) -> list[tuple[str, int, int]]:
    """(table, first row time, last row time) for every table the message writes rows to."""
    if isinstance(message, TelemetryBatch):
        ranges = []
        if message.fixes.time_ns:
            ranges.append(("positions", min(message.fixes.time_ns), max(message.fixes.time_ns)))
        if message.samples.time_ns:
            ranges.append(("signal_samples", min(message.samples.time_ns), max(message.samples.time_ns)))
        return ranges
    if isinstance(message, Event):
        return [("events", message.time_ns, message.time_ns)]
    table = "device_status" if isinstance(message, Status) else "command_acks"
    return [(table, message.header.sent_ns, message.header.sent_ns)]


def row_count(message: UplinkMessage) -> int:
    if isinstance(message, TelemetryBatch):
        return len(message.fixes) + len(message.samples)
    return 1


class Validator:
    """Validates received messages; `is_registered` answers from the receiver's device cache.

    `oldest_ns(table)` gives the oldest acceptable row time per table (its retention horizon);
    `max_future_ns` how far ahead of `now_ns` a row may be stamped.
    """

    def __init__(
        self,
        is_registered: Callable[[str], bool],
        oldest_ns: Callable[[str], int],
        max_future_ns: int,
        now_ns: Callable[[], int],
        max_payload_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._is_registered = is_registered
        self._oldest_ns = oldest_ns
        self._max_future_ns = max_future_ns
        self._now_ns = now_ns
        self._max_payload_bytes = max_payload_bytes

    def check(self, incoming: Incoming) -> Outcome:
        claimed: str | None = None
        try:
            if len(incoming.payload) > self._max_payload_bytes:
                return Rejected(incoming, "oversized",
                                f"payload of {len(incoming.payload)} bytes exceeds the limit of "
                                f"{self._max_payload_bytes}", _claimed_from_topic(incoming.topic))
            topic = parse_topic(incoming.topic)
            claimed = topic.device_id
            if topic.direction != "up":
                return Rejected(incoming, "wrong_direction",
                                "a downlink topic reached the receiver", claimed)
            message = protocol.decode(incoming.payload)
            if not isinstance(message, TelemetryBatch | Event | Status | CommandAck):
                return Rejected(incoming, "not_uplink",
                                f"{type(message).__name__} is not an uplink message", claimed)
            check_message_topic(topic, KIND_OF[type(message)], message.header.device_id)
        except ProtocolError as error:
            return Rejected(incoming, reason_code_of(error), str(error)[:500], claimed)
        device_id = message.header.device_id
        if not self._is_registered(device_id):
            return Rejected(incoming, "unknown_device", f"device {device_id!r} is not registered", claimed)
        now_ns = self._now_ns()
        for table, first_ns, last_ns in time_ranges_ns(message):
            if last_ns > now_ns + self._max_future_ns:
                return Rejected(incoming, "time_out_of_range",
                                f"a {table} row is stamped {(last_ns - now_ns) / 3.6e12:.1f} h in the future",
                                claimed)
            if first_ns < self._oldest_ns(table):
                return Rejected(incoming, "time_out_of_range",
                                f"a {table} row is older than the retention horizon of its data class",
                                claimed)
        return Accepted(incoming, message, row_count(message))


def _claimed_from_topic(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[2][:64] if len(parts) >= 3 else None
