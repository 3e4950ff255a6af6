"""The agent config: the shipped example matches the schema; bad files are refused clearly."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from edge.agent.config import SCHEMA, load_config, parse_config
from edge.detect.registry import build_detector
from edge.sources.registry import get_spec
from hil.services import REPO_ROOT
from lienwatch.errors import ConfigError

EXAMPLE = REPO_ROOT / "deploy/agent.example.toml"
MINIMAL = {"device": {"id": "veh-1"}, "uplink": {"mqtt": {"host": "broker"}}}


def test_example_config_loads_against_the_schema() -> None:
    config = load_config(EXAMPLE)
    assert config.device_id == "veh-000001"
    for table in config.sources:  # each source table is valid for its kind's own schema
        get_spec(table["kind"]).validate(table)
    assert {t["kind"] for t in config.sources} == {"obd", "gnss", "power"}


def test_example_documents_every_key_with_its_default() -> None:
    text = EXAMPLE.read_text()
    document = tomllib.loads(text)
    for key in SCHEMA:
        section, _, name = key.name.rpartition(".")
        table = document
        for part in section.split("."):
            table = table[part]
        assert name in table, f"{key.name} missing from the example"
        if key.default is not None:
            assert table[name] == key.default, key.name
        # the line before the key (or before "(required)") is a comment
        match = re.search(rf"#[^\n]*\n(?:# \(required\)\n)?{re.escape(name)} = ", text)
        assert match, f"{key.name} has no comment above it"


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config["uplink.mqtt.keepalive_s"] == 240
    assert config["uplink.mqtt.port"] == 8883


@pytest.mark.parametrize(("document", "message"), [
    ({}, "device.id is required"),
    ({"device": {"id": "veh 1"}, "uplink": {"mqtt": {"host": "b"}}}, "device.id must be"),
    ({**MINIMAL, "agent": {"tick_s": "fast"}}, "agent.tick_s must be float"),
    ({**MINIMAL, "agent": {"tick_s": float("nan")}}, "finite"),
    ({**MINIMAL, "agent": {"tikc_s": 1.0}}, "unknown setting agent.tikc_s"),
    ({"device": {"id": "v"}, "uplink": {"mqtt": {"host": "b", "port": 70000}}}, "port must be in"),
    ({"device": {"id": "v"}, "uplink": {"mqtt": {"host": "b", "keepalive_s": True}}}, "must be int"),
    ({**MINIMAL, "sources": {"kind": "gnss"}}, "array of tables"),
    ({"device": {"id": "v"}, "uplink": {"mqtt": {"host": "b"}, "queue": {"max_bytes": 100_000,
                                                                       "segment_bytes": 200_000}}},
     "segment_bytes must not exceed"),
])
def test_bad_configs_are_refused_with_the_key_named(document: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(document)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("device = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "bin.toml")


def test_remote_settings_only_for_remote_keys() -> None:
    config = parse_config(MINIMAL)
    changed = config.with_settings({"uplink.telemetry.batch_interval_s": 10}, version=3)
    assert changed["uplink.telemetry.batch_interval_s"] == 10.0 and changed.remote_version == 3
    with pytest.raises(ConfigError, match="cannot be changed remotely"):
        config.with_settings({"uplink.mqtt.host": "evil.example"}, version=4)
    with pytest.raises(ConfigError, match="no such setting"):
        config.with_settings({"nope": 1}, version=4)
    with pytest.raises(ConfigError, match="must be in"):
        config.with_settings({"uplink.budget.event_reserve_fraction": 2.0}, version=4)


def test_unknown_detector_kinds_and_tables_without_kind_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown detector kind 'towing'"):
        build_detector({"kind": "towing"})
    with pytest.raises(ConfigError, match="needs kind"):
        build_detector({"radius_m": 3})
