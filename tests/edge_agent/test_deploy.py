"""The shipped systemd unit and broker config agree with the agent's defaults."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from edge.agent.config import SCHEMA
from hil.services import REPO_ROOT

UNIT = REPO_ROOT / "deploy/systemd/lienwatch-agent.service"
DEFAULTS = {key.name: key.default for key in SCHEMA}


def _directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            name, _, value = line.partition("=")
            found.setdefault(name.strip(), []).append(value.strip())
    return found


def test_unit_is_a_watched_hardened_notify_service() -> None:
    unit = _directives(UNIT)
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["always"]
    assert unit["WatchdogSec"] and unit["NoNewPrivileges"] == ["true"]
    assert unit["ProtectSystem"] == ["strict"] and unit["CapabilityBoundingSet"] == [""]
    assert unit["ExecStart"][0].endswith("edge run --config /etc/lienwatch/agent.toml")
    # The directories systemd creates are the ones the agent writes to by default.
    assert f"/var/lib/{unit['StateDirectory'][0]}" == DEFAULTS["agent.state_dir"]
    assert str(DEFAULTS["agent.status_file"]).startswith(f"/run/{unit['RuntimeDirectory'][0]}/")


def test_systemd_accepts_the_unit() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # not every CI image has systemd; the directive test above still runs
        return
    result = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, check=False)
    # Only complaints about the unit's own text count (an unknown or invalid directive); the
    # missing /usr/bin/lienwatch and the host's own state (no bus, other units) do not.
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "lienwatch-agent.service" in line
                and any(word in line for word in ("Unknown", "unknown", "Invalid", "invalid",
                                                   "Failed to parse", "not a valid"))]
    assert problems == []


def test_broker_config_has_a_device_and_a_service_listener_and_only_mappable_paths() -> None:
    conf = (REPO_ROOT / "deploy/mosquitto/lienwatch.conf").read_text().splitlines()
    lines = [line for line in conf if line.strip() and not line.startswith("#")]
    for line in lines:
        for word in line.split()[1:]:
            if word.startswith("/"):
                assert word.startswith(("/etc/lienwatch/", "/var/lib/lienwatch/")), line
    # Every listener is a block of its own settings (per_listener_settings true).
    blocks: dict[str, dict[str, str]] = {}
    top: dict[str, str] = {}
    current = top
    for line in lines:
        name, _, value = line.partition(" ")
        if name == "listener":
            current = blocks.setdefault(value, {})
        else:
            current[name] = value
    assert top["per_listener_settings"] == "true"
    assert set(blocks) == {"8883", "8884"}
    for settings in blocks.values():
        assert settings["require_certificate"] == "true" and settings["use_identity_as_username"] == "true"
        assert settings["allow_anonymous"] == "false" and settings["tls_version"] == "tlsv1.2"
        assert all("GCM" in suite or "CHACHA20" in suite for suite in settings["ciphers"].split(":"))
        assert all(suite.startswith("ECDHE-") for suite in settings["ciphers"].split(":"))
        assert settings["crlfile"] == settings["cafile"].replace("ca.crt", "ca.crl")
    devices, services = blocks["8883"], blocks["8884"]
    assert devices["cafile"] != services["cafile"] and devices["acl_file"] != services["acl_file"]
    # Service rights (`user` lines) exist only in the ACL of the service CA's listener.
    device_acl = (REPO_ROOT / "deploy/mosquitto/acl").read_text().splitlines()
    assert not [line for line in device_acl if line.startswith(("user", "topic"))]
    assert devices["acl_file"].endswith("/acl") and services["acl_file"].endswith("/acl-services")
