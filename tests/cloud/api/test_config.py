"""The API's TOML config: the shipped example loads and shows every key at its default; garbage
is refused with a ConfigError naming the key."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from cloud.api.config import ApiConfig, CorsConfig, RateLimitConfig, load_config, parse_config
from hil.services import REPO_ROOT
from lienwatch.errors import ConfigError
from protocol.signing import generate_key, private_key_to_pem, public_key_to_pem

EXAMPLE = REPO_ROOT / "deploy" / "api" / "api.toml"
DSN = "postgresql://lienwatch_api@127.0.0.1:5432/lienwatch"


def test_the_example_loads_and_shows_every_key_at_its_default_unless_marked() -> None:
    config = load_config(EXAMPLE)
    assert config.dsn == DSN and config.mqtt is not None and config.mqtt.client_id == "lienwatch-api"
    assert config.security_headers["Strict-Transport-Security"] == "max-age=63072000"
    schemas = {"api": ApiConfig, "api.rate_limit": RateLimitConfig, "api.cors": CorsConfig}
    seen: dict[str, set[str]] = {name: set() for name in schemas}
    section, wrong = "", []
    for line in EXAMPLE.read_text().splitlines():
        header = re.fullmatch(r"\[([a-z_.]+)\]", line.strip())
        if header:
            section = header.group(1)
            continue
        setting = re.fullmatch(r"([a-z_]+)\s*=\s*(.+?)(\s+#.*)?", line.strip())
        if setting is None or section not in schemas:
            continue
        name, value = setting.group(1), tomllib.loads(f"v = {setting.group(2)}")["v"]
        seen[section].add(name)
        default = {f.name: f.default for f in fields(schemas[section])}[name]
        if value != (list(default) if isinstance(default, tuple) else default) and "example" not in line:
            wrong.append(f"[{section}] {name}")
    assert wrong == []
    missing = {s: {f.name for f in fields(c)} - seen[s] for s, c in schemas.items()}
    assert missing == {s: set() for s in schemas}


@pytest.mark.parametrize(("data", "message"), [
    ({}, "database.dsn is required"),
    ({"database": {"dsn": "postgresql://"}}, "database.dsn"),
    ({"database": {"dsn": DSN, "pool": 3}}, "unknown key 'pool'"),
    ({"database": {"dsn": DSN}, "server": {}}, "unknown section 'server'"),
    ({"database": {"dsn": DSN}, "api": {"port": 0}}, "api.port"),
    ({"database": {"dsn": DSN}, "api": {"port": "80"}}, "api.port must be an integer"),
    ({"database": {"dsn": DSN}, "api": {"host": "0.0.0.0"}}, "not loopback"),
    ({"database": {"dsn": DSN}, "api": {"pool_min_size": 9}}, "pool_min_size must be <="),
    ({"database": {"dsn": DSN}, "api": {"account_manager_track_days": -1}}, "must be > 0"),
    ({"database": {"dsn": DSN}, "api": {"command_ttl_s": 8 * 86400}}, "command_ttl_s must be <="),
    ({"database": {"dsn": DSN}, "api": {"publish_timeout_s": float("nan")}}, "finite"),
    ({"database": {"dsn": DSN}, "api": {"colour": "red"}}, "unknown key 'colour'"),
    ({"database": {"dsn": DSN}, "api": {"workers": 0}}, "api.workers must be > 0"),
    ({"database": {"dsn": DSN}, "api": {"workers": 65}}, "api.workers must be <= 64"),
    ({"database": {"dsn": DSN}, "api": {"workers": "2"}}, "api.workers must be an integer"),
    ({"database": {"dsn": DSN}, "api": {"read_threads": 0}}, "api.read_threads must be > 0"),
    ({"database": {"dsn": DSN}, "api": {"read_threads": 65}}, "api.read_threads must be <= 64"),
    ({"database": {"dsn": DSN}, "api": {"read_threads": True}}, "api.read_threads must be an integer"),
    ({"database": {"dsn": DSN}, "api": {"rate_limit": {"per_minute": 0}}}, "api.rate_limit.per_minute"),
    ({"database": {"dsn": DSN}, "api": {"cors": {"allow_origins": ["not an origin"]}}}, "allow_origins"),
    ({"database": {"dsn": DSN}, "api": {"cors": {"allow_origins": "https://x"}}}, "list of non-empty"),
    ({"database": {"dsn": DSN}, "api": {"security_headers": {"Bad Name": "x"}}}, "security_headers"),
    ({"database": {"dsn": DSN}, "api": {"security_headers": {"X-A": "line\nbreak"}}}, "security_headers"),
    ({"database": {"dsn": DSN}, "mqtt": {"host": "broker.example", "insecure_plaintext": True}}, "loopback"),
    ({"database": {"dsn": DSN}, "mqtt": {"port": 1883}}, "mqtt.tls is required"),
    ({"database": {"dsn": DSN}, "api": {"command_signing_key_file": "/nonexistent/key.pem"}}, "cannot read"),
])
def test_bad_settings_are_refused_naming_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(data)


def test_the_signing_key_must_be_an_ed25519_private_key(tmp_path: Path) -> None:
    key = generate_key()
    public = tmp_path / "public.pem"
    public.write_bytes(public_key_to_pem(key.public_key()))
    with pytest.raises(ConfigError, match="command_signing_key_file"):
        parse_config({"database": {"dsn": DSN}, "api": {"command_signing_key_file": str(public)}})
    private = tmp_path / "private.pem"
    private.write_bytes(private_key_to_pem(key))
    loaded = parse_config({"database": {"dsn": DSN}, "api": {"command_signing_key_file": str(private)}})
    assert bytes(loaded.signing_key() or b"") == bytes(key)


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "api.toml"
    path.write_bytes(b"[api\nport = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
