"""Checksum-valid NMEA with absurd values, and logs with odd lines: one validation (fix.plausible)
for the agent's source and `lienwatch gnss parse`; valid JSON only; counts that add up."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from edge.sources.gnss.fix import MAX_SATS, SPEED_KMH
from edge.sources.gnss.nmea import make_sentence
from edge.sources.gnss.source import GnssSource
from hil.gnss import drive, epoch_sentences
from lienwatch.cli import main
from lienwatch.clock import ManualClock

Capsys = pytest.CaptureFixture[str]
START = dt.datetime(2026, 3, 14, 9, 27, 25, tzinfo=dt.UTC)
ABSURD = [  # checksum-valid sentences a broken or hostile receiver could send
    "GNRMC,092725.00,A,4717.11399,N,00833.91590,E,100000.0,999.0,140326,,,A,V",  # 185,200 km/h, course 999
    "GNGGA,092725.00,4717.11399,N,00833.91590,E,1,99,999.9,499.6,M,48.0,M,,",  # 99 satellites, HDOP 999.9
    "GNRMC,092726.00,A,4717.11399,N,00833.91590,E,1e308,45.0,140326,,,A,V",  # speed overflows to inf
    "GNGGA,092726.00,4717.11399,N,00833.91590,E,1,08,0.9,1e9,M,48.0,M,,",  # 1,000,000 km up
    "GNRMC,092727.00,A,9917.11399,N,00833.91590,E,10.0,45.0,140326,,,A,V",  # latitude 99°
    "GNGGA,092727.00,9917.11399,N,00833.91590,E,1,08,0.9,400,M,48.0,M,,",
    "GNRMC,092728.00,A,,,,,10.0,45.0,140326,,,A,V",  # "3d" without a position
    "GNGGA,092728.00,,,,,1,08,nan,inf,M,48.0,M,,",
    "GNGST,092728.00,1.2,,,,1e308,1e308,1.5",  # accuracy overflows to inf
]


def _strict_json(line: str) -> dict[str, object]:
    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    record: dict[str, object] = json.loads(line, parse_constant=refuse)
    return record


def _check_plausible(record: dict[str, object]) -> None:
    if record["fix"] != "none":
        assert record["lat"] is not None and record["lon"] is not None, record
    assert record["lat"] is None or abs(float(record["lat"])) <= 90  # type: ignore[arg-type]
    speed, course, sats, hdop = record["speed_kmh"], record["course_deg"], record["sats"], record["hdop"]
    assert speed is None or SPEED_KMH[0] <= float(speed) <= SPEED_KMH[1]  # type: ignore[arg-type]
    assert course is None or 0 <= float(course) < 360  # type: ignore[arg-type]
    assert sats is None or 0 <= int(sats) <= MAX_SATS  # type: ignore[call-overload]
    assert hdop is None or 0 <= float(hdop) <= 99.99  # type: ignore[arg-type]


def test_gnss_parse_nulls_absurd_values_prints_valid_json_and_says_so(tmp_path: Path, capsys: Capsys) -> None:
    log = tmp_path / "absurd.nmea"
    log.write_text("".join(make_sentence(body) + "\r\n" for body in ABSURD))
    assert main(["gnss", "parse", str(log)]) == 0
    captured = capsys.readouterr()
    records = [_strict_json(line) for line in captured.out.splitlines()]
    assert len(records) == 4
    for record in records:
        _check_plausible(record)
    assert records[0]["lat"] == 47.2852332 and records[0]["speed_kmh"] is None and records[0]["sats"] is None
    assert [r["fix"] for r in records] == ["3d", "3d", "none", "none"]
    # GST is not decoded by `gnss parse` (it prints no accuracy): no h_acc_m here
    assert "implausible values nulled: 2 alt_m, 1 course_deg, 2 hdop, 1 position, 1 sats, 2 speed_kmh" \
        in captured.err


def test_the_agent_source_sees_the_same_fixes_as_gnss_parse(tmp_path: Path, capsys: Capsys) -> None:
    """One validation: the GNSS source (the agent) and the CLI give the same values for the same bytes."""
    data = "".join(make_sentence(body) + "\r\n" for body in ABSURD).encode()
    source = GnssSource("gnss", ManualClock(), device=str(tmp_path / "unused"), slow_sentence_interval_s=0)
    agent = [fix.as_json() for fix in source.feed(data, None) + source.feed_end()]
    (tmp_path / "absurd.nmea").write_bytes(data)
    assert main(["gnss", "parse", str(tmp_path / "absurd.nmea")]) == 0
    assert agent == [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert source.health.counters.get("implausible_values", 0) == 0  # set by poll's health update
    source._update_health(0)
    assert source.health.counters["implausible_values"] == 10  # the CLI's 9 and the GST's accuracy


def _clean_log(seconds: int = 5) -> list[str]:
    return [s for epoch in drive(START, seconds) for s in epoch_sentences(epoch)]


def test_a_10_mb_line_is_one_corrupt_line(tmp_path: Path, capsys: Capsys) -> None:
    lines = _clean_log(2)
    log = tmp_path / "long.nmea"
    with log.open("wb") as out:
        out.write(("\r\n".join(lines[:12]) + "\r\n").encode())
        out.write(b"A" * 10_000_000 + b"\r\n")
        out.write(("\r\n".join(lines[12:]) + "\r\n").encode())
    assert main(["gnss", "parse", str(log)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    assert f"{len(lines) + 1} lines: " in captured.err and "1 skipped (1 corrupt)" in captured.err


@pytest.mark.parametrize("ending", ["\r", "\n", "\r\n"])
def test_cr_only_lf_only_and_crlf_logs_read_the_same(tmp_path: Path, ending: str, capsys: Capsys) -> None:
    log = tmp_path / "log.nmea"
    log.write_text(ending.join(_clean_log()) + ending)
    assert main(["gnss", "parse", str(log)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 5
    assert f"{len(_clean_log())} lines: " in captured.err and "0 skipped" in captured.err


def test_two_sentences_on_one_line_both_count_and_the_summary_adds_up(tmp_path: Path, capsys: Capsys) -> None:
    lines = _clean_log(3)
    glued = [lines[0] + lines[1], "noise" + lines[2], *lines[3:]]  # a lost line ending; a cut-off tail
    log = tmp_path / "glued.nmea"
    log.write_text("\r\n".join(glued) + "\r\n")
    assert main(["gnss", "parse", str(log)]) == 0
    err = capsys.readouterr().err
    total = len(lines) + 1  # every sentence, and the fragment before one
    throttled = int(err.split(", ")[1].split()[0]) if "not parsed" in err else 0
    assert f"{len(glued)} lines ({total} sentences and fragments): " in err
    accepted = int(err.split("): ")[1].split()[0])
    assert accepted + throttled + 1 == total and "1 skipped (1 truncated)" in err
