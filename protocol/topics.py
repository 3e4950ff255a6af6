"""The MQTT topic layout and the QoS of each message kind.

    lienwatch/v1/{device_id}/up/{telemetry|event|status|ack}    device → cloud
    lienwatch/v1/{device_id}/down/command                       cloud → device
    lienwatch/v1/{device_id}/down/receipt                       cloud → device (stored receipts)

The device id is the third level so that a broker ACL can pin a client certificate to its own
subtree (mosquitto: `pattern readwrite lienwatch/v1/%u/#`). The `v1` level is the protocol major
version: a future major version gets its own subtree, so old receivers never see its messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocol.errors import TopicError, TopicMismatchError
from protocol.fields import DEVICE_ID_RE
from protocol.limits import MAJOR_VERSION
from protocol.messages import MessageKind

PREFIX = f"lienwatch/v{MAJOR_VERSION}"
UPLINK_SUBSCRIPTION = f"{PREFIX}/+/up/+"  # what a cloud receiver subscribes to

Direction = Literal["up", "down"]

_UP_NAMES: dict[MessageKind, str] = {
    MessageKind.TELEMETRY: "telemetry",
    MessageKind.EVENT: "event",
    MessageKind.STATUS: "status",
    MessageKind.COMMAND_ACK: "ack",
}
_DOWN_NAMES: dict[MessageKind, str] = {MessageKind.COMMAND: "command", MessageKind.STORED_RECEIPT: "receipt"}
_BY_NAME: dict[tuple[str, str], MessageKind] = {
    **{("up", name): kind for kind, name in _UP_NAMES.items()},
    **{("down", name): kind for kind, name in _DOWN_NAMES.items()},
}

# Telemetry, events and acks are at-least-once (QoS 1) and deduplicated by the receiver on
# (device_id, boot_id, seq); QoS 2 would cost two more round trips per message on cellular.
# A status is superseded by the next heartbeat, so it goes at QoS 0 and is never queued.
QOS: dict[MessageKind, int] = {
    MessageKind.TELEMETRY: 1,
    MessageKind.EVENT: 1,
    MessageKind.STATUS: 0,
    MessageKind.COMMAND_ACK: 1,
    MessageKind.COMMAND: 1,
    MessageKind.STORED_RECEIPT: 1,  # kept for an offline device's session: saves a re-send
}


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed lienwatch topic."""

    device_id: str
    direction: Direction
    kind: MessageKind

    def __str__(self) -> str:
        return topic_for(self.kind, self.device_id)


def _check_device(device_id: str) -> str:
    if not isinstance(device_id, str) or DEVICE_ID_RE.fullmatch(device_id) is None:
        raise TopicError(f"device id {device_id!r} is not 1..64 characters of A-Z a-z 0-9 . _ -")
    return device_id


def topic_for(kind: MessageKind, device_id: str) -> str:
    """The topic a message of `kind` for/from `device_id` is published on."""
    _check_device(device_id)
    if kind in _UP_NAMES:
        return f"{PREFIX}/{device_id}/up/{_UP_NAMES[kind]}"
    if kind in _DOWN_NAMES:
        return f"{PREFIX}/{device_id}/down/{_DOWN_NAMES[kind]}"
    raise TopicError(f"message kind {kind!r} is not published on its own topic")


def uplink_topic(kind: MessageKind, device_id: str) -> str:
    if kind not in _UP_NAMES:
        raise TopicError(f"{kind!r} is not an uplink message kind")
    return topic_for(kind, device_id)


def command_topic(device_id: str) -> str:
    """The topic a device subscribes to for its commands."""
    return topic_for(MessageKind.COMMAND, device_id)


def receipt_topic(device_id: str) -> str:
    """The topic a device subscribes to for its stored receipts (kind 18)."""
    return topic_for(MessageKind.STORED_RECEIPT, device_id)


def qos_for(kind: MessageKind) -> int:
    try:
        return QOS[kind]
    except KeyError:
        raise TopicError(f"message kind {kind!r} has no topic and no QoS") from None


def parse_topic(topic: str) -> Topic:
    """Split a topic into device id, direction and kind; TopicError if it is not one of ours."""
    if not isinstance(topic, str) or len(topic) > 200:
        raise TopicError("a lienwatch topic is a string of at most 200 characters")
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX:
        raise TopicError(f"topic {topic[:100]!r} is not of the form {PREFIX}/DEVICE/up|down/KIND")
    _, _, device_id, direction, name = parts
    _check_device(device_id)
    kind = _BY_NAME.get((direction, name))
    if kind is None:
        raise TopicError(f"topic {topic[:100]!r}: no message kind {direction}/{name}")
    return Topic(device_id, "up" if direction == "up" else "down", kind)


def check_message_topic(topic: Topic, kind: MessageKind, device_id: str | None) -> None:
    """Refuse a message whose kind or (header) device id does not match the topic it came on.

    The topic's device id is what the broker authenticated (ACL); the header's must agree.
    """
    if topic.kind != kind:
        raise TopicMismatchError(f"a {kind.name} message arrived on the {topic.kind.name} topic")
    if device_id is not None and device_id != topic.device_id:
        raise TopicMismatchError(
            f"message from device {device_id!r} arrived on the topic of device {topic.device_id!r}")
