"""Receiver config and message validation refuse garbage with typed, specific reasons."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from cloud.config import load_config, parse_config
from cloud.ingest.validate import Accepted, Incoming, Rejected, Validator, reason_code_of
from lienwatch.cli import main
from lienwatch.errors import ConfigError
from lienwatch.services import DEPLOY_DIR
from protocol.errors import PayloadTooLargeError, TopicError
from tests.cloud.helpers import event, telemetry, topic_of

MINIMAL = {"database": {"dsn": "postgresql:///x"}, "mqtt": {"client_id": "r1"}}


def test_the_shipped_example_config_loads() -> None:
    config = load_config(DEPLOY_DIR / "receiver" / "receiver.toml")
    assert config.mqtt.client_id == "lienwatch-receiver-1" and config.mqtt.tls is not None
    assert config.retention.days["signals"] == 90 and config.retention.days["rejected"] == 30
    assert config.metrics.host == "127.0.0.1"


@pytest.mark.parametrize(("patch", "message"), [
    ({"mqtt": {}}, "mqtt.client_id is required"),
    ({"database": {}}, "database.dsn is required"),
    ({"mqtt": {"client_id": "r", "port": 0}}, "mqtt.port"),
    ({"mqtt": {"client_id": "r", "port": "1883"}}, "mqtt.port must be an integer"),
    ({"mqtt": {"client_id": "r", "share_group": "a/b"}}, "share_group"),
    ({"mqtt": {"client_id": "r", "receive_maximum": 70000}}, "receive_maximum"),
    ({"mqtt": {"client_id": "r", "colour": "blue"}}, "unknown key 'colour'"),
    ({"ingest": {"batch_max_rows": 0}}, "ingest.batch_max_rows must be > 0"),
    ({"ingest": {"batch_max_delay_ms": True}}, "must be an integer"),
    ({"retention": {"signals_days": -1}}, "retention.signals_days"),
    ({"retention": {"action": "shred"}}, "retention.action"),
    ({"retention": {"forever": 1}}, "unknown key 'forever'"),
    ({"metrics": {"port": 70000}}, "metrics.port"),
    ({"bogus": {}}, "unknown section 'bogus'"),
])
def test_bad_configs_name_the_key(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, **patch})


def test_unreadable_or_invalid_toml_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[mqtt\nclient_id = ")
    assert main(["cloud", "ingest", "--config", str(tmp_path / "bad.toml")]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def _validator(registered: frozenset[str] = frozenset({"gw-1"})) -> Validator:
    return Validator(lambda d: d in registered, lambda table: 0, 3600 * 10**9, time.time_ns, 4096)


@settings(max_examples=300, deadline=None)
@given(topic=st.one_of(st.just("lienwatch/v1/gw-1/up/telemetry"), st.text(max_size=80)),
       payload=st.binary(max_size=600))
def test_any_bytes_on_any_topic_are_accepted_or_rejected_never_raise(topic: str, payload: bytes) -> None:
    outcome = _validator().check(Incoming(topic, payload, 1, 1, time.time_ns()))
    assert isinstance(outcome, Accepted | Rejected)
    if isinstance(outcome, Rejected):
        assert outcome.reason_code and outcome.reason


def test_validation_reasons() -> None:
    v = _validator()
    good = telemetry("gw-1", 1)
    outcome = v.check(Incoming(topic_of(good), protocol.encode(good), 1, 1, time.time_ns()))
    assert isinstance(outcome, Accepted)
    future = telemetry("gw-1", 1, start_ns=time.time_ns() + 7200 * 10**9)
    outcome = v.check(Incoming(topic_of(future), protocol.encode(future), 1, 1, time.time_ns()))
    assert isinstance(outcome, Rejected) and outcome.reason_code == "time_out_of_range"
    old = Validator(lambda d: True, lambda table: time.time_ns(), 10**12, time.time_ns)
    ev = event("gw-1", 3)
    outcome = old.check(Incoming(topic_of(ev), protocol.encode(ev), 1, 1, time.time_ns()))
    assert isinstance(outcome, Rejected) and "retention horizon" in outcome.reason
    down = v.check(Incoming("lienwatch/v1/gw-1/down/command", protocol.encode(good), 1, 1, 0))
    assert isinstance(down, Rejected) and down.reason_code == "wrong_direction"
    assert reason_code_of(PayloadTooLargeError("x")) == "payload_too_large"
    assert reason_code_of(TopicError("x")) == "bad_topic"


def test_merge_mode_is_checked() -> None:
    assert parse_config({**MINIMAL, "ingest": {"merge": "staging"}}).ingest.merge == "staging"
    with pytest.raises(ConfigError, match=r"ingest\.merge"):
        parse_config({**MINIMAL, "ingest": {"merge": "yolo"}})
