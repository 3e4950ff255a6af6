"""The gateway build's own files (docs/gateway.md): scripts parse, bad arguments are refused before
anything is built, the package's control template is complete, and the HIL template that
`make gateway-test` provisions from passes the agent's config schema. The builds themselves run in
`make gateway` / `make gateway-test` (minutes under qemu-user), not here."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench.gateway import _template
from edge.provision import render_config

REPO = Path(__file__).resolve().parent.parent
GATEWAY = REPO / "deploy/gateway"


@pytest.mark.parametrize("script", ["gateway.sh", "debian/postinst", "debian/prerm", "debian/postrm"])
def test_scripts_parse(script: str) -> None:
    result = subprocess.run(["sh", "-n", str(GATEWAY / script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (GATEWAY / script).stat().st_mode & 0o111, f"{script} is not executable"


@pytest.mark.parametrize("args", [["build", "sparc"], ["deb", "x86_64"], ["frobnicate"], []])
def test_gateway_sh_refuses_bad_arguments(args: list[str]) -> None:
    result = subprocess.run([str(GATEWAY / "gateway.sh"), *args], capture_output=True, text=True, check=False,
                            timeout=30)
    assert result.returncode != 0
    assert "gateway:" in result.stderr and ("architecture" in result.stderr or "usage" in result.stderr
                                            or "unknown command" in result.stderr or "root" in result.stderr)


def test_control_template_has_every_field() -> None:
    text = (GATEWAY / "debian/control").read_text()
    fields = dict(line.split(": ", 1) for line in text.splitlines()
                  if ": " in line and not line.startswith(" "))
    assert {"Package", "Version", "Architecture", "Depends", "Installed-Size", "Description"} <= set(fields)
    assert all(placeholder in text for placeholder in ("@VERSION@", "@ARCH@", "@INSTALLED_KB@", "@PYTHON@"))
    assert "openssl" in fields["Depends"]


def test_hil_template_renders_to_a_valid_agent_config(tmp_path: Path) -> None:
    sources = ('[[sources]]\nkind = "gnss"\ndevice = "/dev/pts/9"\n'
               '[[sources]]\nkind = "power"\nbackup_battery = "/tmp/sys/battery"\nperiod_s = 1.0\n')
    template = tmp_path / "template.toml"
    template.write_text(_template(sources))
    rendered = tomllib.loads(render_config(template, {"device.id": "gw-t", "uplink.mqtt.host": "localhost",
                                                      "uplink.mqtt.port": 18883}))
    assert [s["kind"] for s in rendered["sources"]] == ["gnss", "power"]
    assert rendered["detectors"] and rendered["agent"]["status_interval_s"] == 1.0
    assert rendered["uplink"]["mqtt"]["port"] == 18883
    assert rendered["uplink"]["telemetry"]["batch_interval_s"] == 5.0


def test_the_smoke_check_passes_here() -> None:
    """deploy/gateway/smoke.py, which every gateway build runs in its target root, passes on the
    host's own compiled extensions."""
    result = subprocess.run([sys.executable, str(GATEWAY / "smoke.py")], capture_output=True, text=True,
                            check=False, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["ok"] and report["extensions"] == 5
