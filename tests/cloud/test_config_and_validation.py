"""Receiver config and message validation refuse garbage with typed, specific reasons."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from cloud.config import ReceiverConfig, load_config, parse_config
from cloud.ingest.validate import Accepted, Incoming, Rejected, Validator, reason_code_of
from hil.services import DEPLOY_DIR
from lienwatch.cli import main
from lienwatch.errors import ConfigError
from protocol.errors import PayloadTooLargeError, TopicError
from tests.cloud.helpers import event, telemetry, topic_of

MINIMAL = {"database": {"dsn": "postgresql://db.example/x"},
           "mqtt": {"client_id": "r1", "insecure_plaintext": True}}


def test_the_shipped_example_config_loads() -> None:
    config = load_config(DEPLOY_DIR / "receiver" / "receiver.toml", check_tls=False)  # no /etc/lienwatch here
    assert config.mqtt.client_id == "lienwatch-receiver-1" and config.mqtt.tls is not None
    assert config.retention.days["signals"] == 90 and config.retention.days["rejected"] == 30
    assert config.metrics.host == "127.0.0.1"


@pytest.mark.parametrize(("patch", "message"), [
    ({"mqtt": {"insecure_plaintext": True}}, "mqtt.client_id is required"),
    ({"database": {}}, "database.dsn is required"),
    ({"mqtt": {"insecure_plaintext": True, "client_id": "r", "port": 0}}, "mqtt.port"),
    ({"mqtt": {"insecure_plaintext": True, "client_id": "r", "port": "1883"}},
     "mqtt.port must be an integer"),
    ({"mqtt": {"insecure_plaintext": True, "client_id": "r", "share_group": "a/b"}}, "share_group"),
    ({"mqtt": {"insecure_plaintext": True, "client_id": "r", "receive_maximum": 70000}}, "receive_maximum"),
    ({"mqtt": {"insecure_plaintext": True, "client_id": "r", "colour": "blue"}}, "unknown key 'colour'"),
    ({"ingest": {"batch_max_rows": 0}}, "ingest.batch_max_rows must be > 0"),
    ({"ingest": {"batch_max_delay_ms": True}}, "must be an integer"),
    ({"retention": {"signals_days": -1}}, "retention.signals_days"),
    ({"retention": {"action": "shred"}}, "retention.action"),
    ({"retention": {"forever": 1}}, "unknown key 'forever'"),
    ({"metrics": {"port": 70000}}, "metrics.port"),
    ({"bogus": {}}, "unknown section 'bogus'"),
    ({"ingest": {"device_refresh_s": float("nan")}}, "ingest.device_refresh_s must be a finite number"),
    ({"retention": {"signals_days": 10**30}}, "retention.signals_days must be an integer in 1..36,600"),
    ({"maintenance": {"retention_interval_s": float("inf")}}, "must be a finite number"),
    ({"database": {"dsn": ""}}, "database.dsn"),
    ({"database": {"dsn": "postgresql:///lienwatch"}}, "database.dsn: the DSN does not name the server"),
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


def _schema_defaults() -> dict[str, dict[str, object]]:
    """Per example-file section, the default of every key (dataclass fields), REQUIRED as None."""
    from dataclasses import MISSING, fields

    from cloud.config import IngestConfig, MaintenanceConfig, MetricsConfig, MqttConfig, TlsConfig
    from cloud.store.retention import DEFAULT_DAYS

    def of(cls: type) -> dict[str, object]:
        return {f.name: None if f.default is MISSING else f.default for f in fields(cls) if f.name != "tls"}

    return {"": {"receiver_id": ""}, "mqtt": of(MqttConfig), "mqtt.tls": of(TlsConfig),
            "ingest": of(IngestConfig), "metrics": of(MetricsConfig), "maintenance": of(MaintenanceConfig),
            "retention": {**{f"{k}_days": v for k, v in DEFAULT_DAYS.items()}, "action": "drop"}}


def test_the_example_config_shows_every_key_at_its_default_unless_marked() -> None:
    """deploy/receiver/receiver.toml: every key appears (set or commented out), and any value that
    is not the schema's default is marked REQUIRED or EXAMPLE on its line."""
    import re
    import tomllib

    defaults = _schema_defaults()
    seen: dict[str, set[str]] = {section: set() for section in defaults}
    section = ""
    wrong = []
    for line in (DEPLOY_DIR / "receiver" / "receiver.toml").read_text().splitlines():
        header = re.fullmatch(r"\[([a-z_.]+)\]", line.strip())
        if header:
            section = header.group(1)
            continue
        setting = re.fullmatch(r"#?\s*([a-z_]+)\s*=\s*(.+)", line.strip())
        if setting is None or section not in defaults:
            continue
        name, value = setting.group(1), tomllib.loads(f"v = {setting.group(2)}")["v"]
        seen[section].add(name)
        assert name in defaults[section], f"[{section}] {name} is not a key of the schema"
        if value != defaults[section][name] and "REQUIRED" not in line and "EXAMPLE" not in line:
            wrong.append(f"[{section}] {name} = {value!r} (default {defaults[section][name]!r})")
    assert wrong == []
    missing = {s: sorted(set(keys) - seen[s]) for s, keys in defaults.items() if set(keys) - seen[s]}
    assert missing == {}


def test_the_receiver_needs_tls_or_an_explicit_plaintext_on_loopback() -> None:
    def mqtt(**values: object) -> ReceiverConfig:
        return parse_config({"database": {"dsn": "postgresql://db.example/x"},
                             "mqtt": {"client_id": "r1", **values}})

    with pytest.raises(ConfigError, match=r"mqtt.tls is required"):
        mqtt()
    with pytest.raises(ConfigError, match=r"mqtt.tls.ca_file is required.*system CA store is never used"):
        mqtt(tls={"ca_file": ""})
    with pytest.raises(ConfigError, match=r"mqtt.tls.ca_file is required"):
        mqtt(tls={})
    with pytest.raises(ConfigError, match=r"set both or neither"):
        mqtt(tls={"ca_file": "ca.crt", "cert_file": "r.crt"})
    with pytest.raises(ConfigError, match=r"contradicts"):
        mqtt(insecure_plaintext=True, tls={"ca_file": "a"})
    with pytest.raises(ConfigError, match=r"loopback"):
        mqtt(host="broker.internal", insecure_plaintext=True)
    with pytest.raises(ConfigError, match=r"must be true or false"):
        mqtt(insecure_plaintext="yes")
    config = mqtt(tls={"ca_file": "ca.crt"})
    assert config.mqtt.port == 8884 and not config.mqtt.insecure_plaintext


def test_a_plaintext_receiver_says_so_at_warning_on_every_start(
        caplog: pytest.LogCaptureFixture) -> None:
    from cloud.ingest.receiver import Receiver
    from tests.cloud.helpers import receiver_config

    receiver = Receiver(receiver_config("postgresql:///nonexistent?connect_timeout=1", 1))
    with caplog.at_level("WARNING", logger="lienwatch.ingest"), pytest.raises(Exception):  # noqa: B017
        receiver.start(connect_timeout_s=0.1)  # fails at the database; the warning came first
    assert any(r.levelname == "WARNING" and "WITHOUT TLS" in r.getMessage() for r in caplog.records)
