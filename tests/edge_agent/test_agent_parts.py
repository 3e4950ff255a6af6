"""The agent's small parts without a broker: logs, status, batching, budget, headers, inbox, CLI."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.agent import logs
from edge.agent.messages import HeaderFactory
from edge.agent.runtime import SampleInbox
from edge.agent.status import StatusFileError, StatusUnavailableError, read_status, render, write_status
from edge.agent.telemetry import TelemetryBatcher, TelemetrySettings
from edge.agent.watchdog import Notifier
from edge.sources.base import Sample
from edge.uplink.sender import DataBudget
from lienwatch.cli import main
from lienwatch.clock import ManualClock
from protocol.messages import ClockQuality


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("lienwatch")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


def test_json_logs_redact_secrets_and_payloads(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure("info", stream, ManualClock(wall_ns=123))
    logging.getLogger("lienwatch.test").warning(
        "hello", extra={"private_key": "-----BEGIN", "signature": b"\x01" * 64, "payload": b"abc",
                        "api_token": "t0ken", "device_id": "veh-1"})
    logging.getLogger("lienwatch.test").debug("not shown at info")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["ts_ns"] == 123 and record["level"] == "warning" and record["msg"] == "hello"
    assert record["private_key"] == record["signature"] == record["api_token"] == logs.REDACTED
    assert record["payload"] == "<3 bytes>" and record["device_id"] == "veh-1"
    assert "BEGIN" not in line and "t0ken" not in line


def test_status_file_round_trip_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "run/status.json"
    write_status(path, {"device_id": "veh-1", "written_ns": 10**18, "uplink": {"state": "connected"},
                        "queue": {"depth": 3, "disk_bytes": 1 << 20, "max_bytes": 1 << 26},
                        "sources": {"gnss": {"state": "ok", "samples": 5, "errors": 0, "detail": ""}}})
    text = render(read_status(path), 10**18 + 2 * 10**9)
    assert "veh-1" in text and "(status 2.0 s old)" in text and "depth 3" in text and "gnss" in text
    path.write_text("{not json")
    with pytest.raises(StatusFileError):
        read_status(path)
    path.write_text("[1, 2]")
    with pytest.raises(StatusFileError):
        read_status(path)
    with pytest.raises(StatusUnavailableError, match="is the agent running"):
        read_status(tmp_path / "missing.json")


def test_status_cli_says_when_the_agent_is_not_running(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge", "status", "--status-file", str(tmp_path / "none.json")]) == 1
    assert "is the agent running" in capsys.readouterr().err
    stale = tmp_path / "stale.json"
    write_status(stale, {"written_ns": 1, "device_id": "veh-1"})
    assert main(["edge", "status", "--status-file", str(stale)]) == 1
    assert "old" in capsys.readouterr().err


def test_run_cli_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[device]\nid = "veh 1"\n')
    assert main(["edge", "run", "--config", str(config)]) == 2
    assert "ConfigError: device.id must be" in capsys.readouterr().err
    assert main(["edge", "run", "--config", str(tmp_path / "missing.toml")]) == 2


def test_telemetry_is_decimated_per_signal_and_closed_by_time_or_size() -> None:
    clock = ManualClock(monotonic_ns=0)
    batcher = TelemetryBatcher(TelemetrySettings(batch_interval_s=10, batch_max_bytes=700,
                                                 sample_period_s=1.0), clock)
    for i in range(100):  # 10 Hz for 10 s on two signals
        batcher.add(Sample(i * 100_000_000, 1, float(i)), mono_to_wall_ns=5)
        batcher.add(Sample(i * 100_000_000, 2, float(-i)), mono_to_wall_ns=5)
    assert len(batcher) == 20 and batcher.seen == 200
    assert not batcher.due()
    clock.advance(10)
    batch = batcher.take_due()
    assert batch is not None
    columns, fixes = batch
    assert columns.time_ns[:2] == (5, 5) and columns.value[2] == 10.0 and len(fixes) == 0
    assert batcher.take_due() is None
    for i in range(100, 200):  # one sample per period, 100 of them: the size closes the batch
        batcher.add(Sample(i * 1_000_000_000, 1, 0.0), 0)
    assert batcher.due()


def test_add_many_decimates_exactly_like_add() -> None:
    samples = [Sample(t * 37_000_000, t % 3, float(t)) for t in range(500)]
    one = TelemetryBatcher(TelemetrySettings(sample_period_s=0.25), ManualClock())
    many = TelemetryBatcher(TelemetrySettings(sample_period_s=0.25), ManualClock())
    for sample in samples:
        one.add(sample, 11)
    many.add_many(samples[:200], 11)
    many.add_many(samples[200:], 11)
    assert one.take() == many.take() and (one.seen, one.kept) == (many.seen, many.kept)


def test_budget_rolls_over_at_utc_midnight_and_forecasts() -> None:
    clock = ManualClock(wall_ns=1_767_225_600_000_000_000 + 6 * 3600 * 10**9)  # 06:00 UTC
    budget = DataBudget(daily_cap_bytes=1000, event_reserve_fraction=0.2, clock=clock)
    budget.spend(500)
    assert budget.telemetry_open() and budget.forecast_today_bytes() == 2000
    budget.spend(400)
    assert not budget.telemetry_open()
    budget.spend(300)
    assert budget.over_cap_bytes == 200
    clock.advance(18 * 3600)
    assert budget.telemetry_open() and budget.spent_today == 0


def test_headers_count_per_boot_and_event_ids_are_unique() -> None:
    factory = HeaderFactory("veh-1", ManualClock(), boot_id=7, clock_quality=lambda: ClockQuality.NTP)
    first, second = factory.header(), factory.header()
    assert (first.seq, second.seq) == (0, 1) and first.boot_id == 7
    assert first.clock_quality == ClockQuality.NTP
    other_boot = HeaderFactory("veh-1", ManualClock(), boot_id=8, clock_quality=lambda: ClockQuality.RTC)
    assert factory.event_id() != other_boot.event_id()
    assert len({factory.event_id() for _ in range(1000)}) == 1000


def test_inbox_counts_overflow_instead_of_blocking() -> None:
    inbox = SampleInbox(capacity=3)
    for i in range(5):
        inbox.put(Sample(i, 1, 0.0))
    assert inbox.overflow == 2 and [s.mono_ns for s in inbox.drain()] == [0, 1, 2]
    assert inbox.drain() == []


def test_notifier_is_silent_outside_systemd() -> None:
    notifier = Notifier(environ={})
    assert not notifier.active and not notifier.ping_if_due() and not notifier.notify("READY=1")
    other_pid = Notifier(environ={"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000",
                                  "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_interval_ns is None  # the watchdog is for another process


@pytest.mark.parametrize("content", [
    b"", b"\xff\xfe\x00binary\x00", b"{not json", b"[1, 2]", b'"status"', b"null",
    b'{"uplink": [1]}', b'{"uplink": {"budget": 3}}', b'{"queue": "full"}', b'{"written_ns": "soon"}',
    b'{"written_ns": 1e400}', b'{"uptime_s": "long"}', b'{"clock": {"gnss_offset_ms": [0]}}',
    b'{"sources": {"gnss": 5}}', b'{"sources": {"gnss": {"state": null}}}', b"[" * 100_000,
    b'{"detectors": {"tow": {"open_events": {"a": 1}}}}', b'{"detectors": {"tow": {"open_events": [3]}}}',
    b'{"detectors": {"tow": 1}}', b'{"power": {"avg_current_ma": "low"}}',
])
def test_status_cli_on_a_file_that_is_not_a_status_file_exits_2_with_one_line(
        tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "status.json"
    path.write_bytes(content)
    for extra in ([], ["--json"]):
        assert main(["edge", "status", "--status-file", str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lienwatch: StatusFileError: ") and str(path) in err


def test_status_cli_on_a_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge", "status", "--status-file", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("lienwatch: StatusFileError: cannot read")
