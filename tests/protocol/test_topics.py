"""MQTT topic layout: build, parse, refuse foreign topics, check a message against its topic."""

from __future__ import annotations

import pytest

from protocol import errors, topics
from protocol.messages import MessageKind


@pytest.mark.parametrize("kind", [MessageKind.TELEMETRY, MessageKind.EVENT, MessageKind.STATUS,
                                  MessageKind.COMMAND_ACK, MessageKind.COMMAND])
def test_topics_round_trip(kind):
    topic = topics.topic_for(kind, "veh-0001")
    parsed = topics.parse_topic(topic)
    assert (parsed.device_id, parsed.kind, str(parsed)) == ("veh-0001", kind, topic)


def test_layout_is_the_documented_one():
    assert topics.uplink_topic(MessageKind.TELEMETRY, "veh-1") == "lienwatch/v1/veh-1/up/telemetry"
    assert topics.command_topic("veh-1") == "lienwatch/v1/veh-1/down/command"
    assert topics.UPLINK_SUBSCRIPTION == "lienwatch/v1/+/up/+"


@pytest.mark.parametrize("topic", [
    "", "lienwatch", "lienwatch/v2/veh-1/up/telemetry", "lienwatch/v1/veh-1/up/command",
    "lienwatch/v1/veh-1/down/telemetry", "lienwatch/v1/+/up/telemetry", "lienwatch/v1/#/up/event",
    "lienwatch/v1/veh-1/up/telemetry/extra", "lienwatch/v1//up/status", "x" * 300,
])
def test_foreign_topics_are_refused(topic):
    with pytest.raises(errors.TopicError):
        topics.parse_topic(topic)


def test_device_ids_with_wildcards_cannot_build_topics():
    with pytest.raises(errors.TopicError):
        topics.topic_for(MessageKind.EVENT, "veh/+")


def test_qos_per_kind():
    assert topics.qos_for(MessageKind.TELEMETRY) == 1 and topics.qos_for(MessageKind.STATUS) == 0
    with pytest.raises(errors.TopicError):
        topics.qos_for(MessageKind.CONFIG)


def test_message_must_match_its_topic():
    topic = topics.parse_topic("lienwatch/v1/veh-1/up/event")
    topics.check_message_topic(topic, MessageKind.EVENT, "veh-1")
    with pytest.raises(errors.TopicMismatchError):
        topics.check_message_topic(topic, MessageKind.STATUS, "veh-1")
    with pytest.raises(errors.TopicMismatchError):
        topics.check_message_topic(topic, MessageKind.EVENT, "veh-2")
