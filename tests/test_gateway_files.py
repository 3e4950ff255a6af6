"""The gateway build's own files (docs/gateway.md): scripts parse, bad arguments are refused before
anything is built, the package's control template is complete, and the HIL template that
`make gateway-test` provisions from passes the agent's config schema. The builds themselves run in
`make gateway` / `make gateway-test` (minutes under qemu-user), not here."""

from __future__ import annotations

import importlib.util
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


@pytest.mark.parametrize("args", [["build", "sparc"], ["deb", "x86_64"], ["sdist-wheels", "mips"],
                                  ["frobnicate"], []])
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


def _crates():  # deploy/gateway/crates.py is a script beside gateway.sh, not a package module
    spec = importlib.util.spec_from_file_location("gateway_crates", GATEWAY / "crates.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("debian", "upstream"), [
    ("1.0.107-1", (1, 0, 107)), ("1:2.7.1-2", (2, 7, 1)), ("0.5.0-1+really0.5.0-2+b1", (0, 5, 0)),
    ("0.5.0+really.0.4.1-5", (0, 4, 1)), ("0.2.19-2+b1", (0, 2, 19)), ("3", (3, 0, 0))])
def test_crates_upstream_version_of_a_debian_version(debian: str, upstream: tuple[int, int, int]) -> None:
    assert _crates().upstream(debian) == upstream


@pytest.mark.parametrize(("requirement", "version", "meets"), [
    ("^0.4.7", (0, 4, 8), True), ("0.4.7", (0, 5, 0), False), ("0.4.7", (0, 4, 6), False),
    (">= 0.4, < 0.6", (0, 5, 0), True), (">= 0.4, < 0.6", (0, 6, 0), False),
    ("2", (2, 0, 119), True), ("2", (3, 0, 9), False), ("^3", (3, 0, 9), True),
    ("=0.28.2", (0, 28, 2), True), ("=0.28.2", (0, 28, 3), False), ("~1.2.3", (1, 2, 9), True),
    ("~1.2.3", (1, 3, 0), False), ("^0.0.3", (0, 0, 4), False), ("*", (7, 1, 0), True),
    ("1.*", (1, 9, 0), True)])
def test_crates_requirements_have_cargos_meaning(requirement: str, version: tuple[int, int, int],
                                                 meets: bool) -> None:
    assert _crates().meets(requirement, version) is meets


def test_crates_picks_the_package_of_the_right_series() -> None:
    index = _crates().Index(["librust-syn-dev 3.0.9-1", "librust-syn-2-dev 2.0.119-2",
                             "librust-syn-1-dev 1.0.109-3", "librust-pyo3-ffi-dev 0.28.2-1",
                             "librust-once-cell-dev 1.21.4-1", "rustc 1.85"])
    assert index.pick("syn", "2") == "librust-syn-2-dev"
    assert index.pick("syn", "^3.0.1") == "librust-syn-dev"
    assert index.pick("syn", ">= 1.0, < 3") == "librust-syn-2-dev"  # the newest that meets it
    assert index.pick("once_cell", "1.21") == "librust-once-cell-dev"  # Debian spells _ as -
    assert index.pick("pyo3", "0.28") is None  # pyo3-ffi is another crate, not a series of pyo3
    assert index.pick("syn", "4") is None


def test_crates_missing_and_garbage_are_refused(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.write_text("librust-libc-dev 0.2.186-1\n")
    crate = tmp_path / "demo-1.0.0"
    crate.mkdir()
    crate.joinpath("Cargo.toml").write_text(
        '[package]\nname = "demo"\n[dependencies]\nlibc = "0.2.62"\nsyn = "2"\n'
        '[dependencies.serde]\nversion = "1"\noptional = true\n'
        "[target.'cfg(windows)'.dependencies]\nwindows-sys = \"0.59\"\n")
    needs = [sys.executable, str(GATEWAY / "crates.py"), "needs", str(index), str(crate)]
    result = subprocess.run(needs, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and result.stdout.split() == ["librust-libc-dev"]
    # Only syn is missing: serde is optional, windows-sys only for Windows.
    assert result.stderr.strip() == "crates.py: Debian has no package of the crate syn 2"
    crate.joinpath("Cargo.toml").write_text('[dependencies]\nlibc = "banana"\n')
    result = subprocess.run(needs, capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "banana" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([*needs[:2], "frobnicate"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "locked" in result.stderr
