"""The foundation: CLI surface, local services, clock and the installable build."""

from __future__ import annotations

import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil.services import REPO_ROOT, render_mosquitto_conf
from lienwatch.cli import build_parser, main
from lienwatch.clock import ManualClock, SystemClock

COMMANDS = [
    ["edge", "run"], ["edge", "status"], ["edge", "probe"], ["obd", "decode"], ["gnss", "parse"],
    ["wire", "decode"], ["wire", "encode"], ["cloud", "migrate"], ["cloud", "ingest"],
    ["cloud", "api"], ["cloud", "keys"], ["cloud", "devices"], ["hil", "run"], ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: lienwatch " + " ".join(command) in capsys.readouterr().out


def test_top_level_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for name in ("edge", "obd", "gnss", "wire", "cloud", "hil", "demo"):
        assert name in text


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["teleport"])
    assert exit_info.value.code == 2


def test_console_script_runs_in_a_subprocess() -> None:
    result = subprocess.run([sys.executable, "-m", "lienwatch", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("lienwatch ")


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(wall_ns=10**18, monotonic_ns=5)
    clock.sleep(1.5)
    assert clock.monotonic_ns() == 5 + 1_500_000_000
    assert clock.wall_ns() == 10**18 + 1_500_000_000
    clock.set_wall_ns(7)
    assert clock.wall_ns() == 7 and clock.monotonic_ns() == 5 + 1_500_000_000
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_system_clock_is_monotonic() -> None:
    clock = SystemClock()
    first = clock.monotonic_ns()
    assert clock.monotonic_ns() >= first
    assert clock.wall_ns() > 1_700_000_000 * 10**9


def test_mosquitto_conf_rendering_changes_only_port_and_paths() -> None:
    shipped = (REPO_ROOT / "deploy/mosquitto/lienwatch-dev.conf").read_text()
    rendered = render_mosquitto_conf(shipped, 4242, {"/var/lib/lienwatch/mosquitto/": "/tmp/x/"})
    assert "listener 4242 127.0.0.1" in rendered
    assert "persistence_location /tmp/x/" in rendered
    assert "listener 1883" not in rendered
    kept = [ln for ln in shipped.splitlines() if not ln.startswith(("listener", "persistence_loc"))]
    assert all(line in rendered.splitlines() for line in kept)


@pytest.mark.services
def test_postgres_fixture_is_a_real_server(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        conn.execute("CREATE TABLE probe (x int)")
        conn.execute("INSERT INTO probe VALUES (41), (1)")
        row = conn.execute("SELECT sum(x) FROM probe").fetchone()
    assert row == (42,)


@pytest.mark.services
def test_mosquitto_fixture_delivers_qos1(mosquitto) -> None:
    got: list[bytes] = []
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        got.append(bytes(message.payload))
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        client.subscribe("probe/#", qos=1)
        assert subscribed.wait(5)
        client.publish("probe/x", b"\x01\x02", qos=1).wait_for_publish(5)
        assert done.wait(5)
    finally:
        client.loop_stop()
        client.disconnect()
    assert got == [b"\x01\x02"]


@pytest.mark.slow
def test_wheel_contains_compiled_extensions(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO_ROOT)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("lienwatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    compiled = [n for n in names if n.startswith("cython_ext/") and n.endswith(".so")]
    assert compiled, f"no compiled extension in {wheel.name}: {names}"
    assert "protocol/signals.toml" in names
    console = {n for n in names if n.startswith("cloud/console/static/")}  # served at /console
    assert {"cloud/console/static/index.html", "cloud/console/static/js/main.js"} <= console


@pytest.mark.slow
def test_edge_extra_pulls_no_web_framework_or_database_driver(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
         "--report", str(report), f"{REPO_ROOT}[edge]"],
        check=True, capture_output=True, timeout=600,
    )
    import json

    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"python-can", "paho-mqtt", "cbor2"} <= names
    assert not names & {"fastapi", "psycopg", "psycopg-binary", "uvicorn", "starlette"}


def test_build_without_a_c_compiler_fails_with_a_clear_message(tmp_path: Path) -> None:
    import os

    result = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-temp", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "CC": "no-such-c-compiler"},
    )
    assert result.returncode != 0
    assert "no C compiler found ('no-such-c-compiler')" in result.stderr
    assert "build-essential" in result.stderr
