"""NMEA parsing, epoch assembly, the GNSS source and clock discipline."""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources.base import HealthState, SourceRunner
from edge.sources.gnss.clock import ClockDiscipline, ClockQuality
from edge.sources.gnss.fix import FixType, GnssFix
from edge.sources.gnss.nmea import NmeaParser, make_sentence
from edge.sources.gnss.source import GnssSource, LineSplitter, NmeaLog
from hil.gnss import NmeaEpoch, default_sats, drive, epoch_sentences, quirky_log
from lienwatch.clock import ManualClock

from .conftest import EXAMPLES, Collect

START = dt.datetime(2026, 3, 14, 9, 27, 25, tzinfo=dt.UTC)


def fixes_of(lines: list[str]) -> tuple[list[GnssFix], NmeaLog]:
    log = NmeaLog()
    return list(log.fixes(line.encode("latin-1") for line in lines)), log


@pytest.mark.parametrize("talker", ["GP", "GN", "GB", "BD", "GL", "GA", "GQ"])
def test_every_talker_is_accepted(talker: str) -> None:
    epoch = NmeaEpoch(time=START, talker=talker, sats=default_sats())
    fixes, log = fixes_of(epoch_sentences(epoch))
    assert len(fixes) == 1
    assert fixes[0].lat == pytest.approx(47.2852331, abs=1e-6)
    assert log.parser.stats.skipped == 0


@pytest.mark.parametrize(
    ("quality", "nav_mode", "expected"),
    [
        (0, 1, FixType.NONE),
        (1, 3, FixType.FIX_3D),
        (1, 2, FixType.FIX_2D),
        (2, 3, FixType.DGPS),
        (4, 3, FixType.RTK_FIXED),
        (5, 3, FixType.RTK_FLOAT),
        (6, 3, FixType.DEAD_RECKONING),
    ],
)
def test_fix_quality_including_rtk(quality: int, nav_mode: int, expected: FixType) -> None:
    epoch = NmeaEpoch(time=START, quality=quality, nav_mode=nav_mode, sats=default_sats())
    (fix,), _ = fixes_of(epoch_sentences(epoch))
    assert fix.fix is expected
    assert (fix.lat is None) == (expected is FixType.NONE)


def test_epoch_fields_time_speed_course_and_accuracy() -> None:
    epoch = NmeaEpoch(
        time=START.replace(microsecond=500_000),
        speed_kmh=72.0,
        course_deg=271.5,
        alt_m=-12.3,
        lat=-33.8688,
        lon=-70.6693,
        hdop=1.3,
        sats=default_sats(),
    )
    (fix,), _ = fixes_of(epoch_sentences(epoch))
    assert fix.time_utc_ns == int(START.timestamp()) * 10**9 + 500_000_000
    assert fix.iso_time() == "2026-03-14T09:27:25.500Z"
    assert fix.lat == pytest.approx(-33.8688, abs=1e-6)
    assert fix.lon == pytest.approx(-70.6693, abs=1e-6)
    assert fix.alt_m == pytest.approx(-12.3)
    assert fix.speed_kmh == pytest.approx(72.0, abs=0.01)
    assert fix.course_deg == pytest.approx(271.5)
    assert fix.hdop == pytest.approx(1.3)
    assert fix.h_acc_m == pytest.approx((1.2**2 + 0.9**2) ** 0.5)
    record = fix.as_json()
    assert list(record) == ["time", "lat", "lon", "alt_m", "speed_kmh", "course_deg", "fix", "sats", "hdop"]
    assert record["fix"] == "3d"


def test_per_constellation_satellites_and_cn0_for_jamming_detection() -> None:
    (fix,), _ = fixes_of(epoch_sentences(NmeaEpoch(time=START, sats=default_sats(cn0=42))))
    gps, galileo, beidou = (fix.constellations[n] for n in ("gps", "galileo", "beidou"))
    assert (gps.in_view, gps.used) == (5, 4)
    assert (galileo.in_view, galileo.used) == (3, 2)
    assert (beidou.in_view, beidou.used) == (4, 3)
    assert gps.cn0_dbhz == {3: 42, 4: 39, 7: 44, 9: 34, 16: 42}
    assert gps.cn0_mean == pytest.approx((42 + 39 + 44 + 34 + 42) / 5)
    assert beidou.cn0_dbhz[35] == 0  # in view, not tracked: kept, but not in the mean
    assert beidou.cn0_mean == pytest.approx((43 + 40 + 37) / 3)
    (jammed,), _ = fixes_of(epoch_sentences(NmeaEpoch(time=START, sats=default_sats(cn0=18))))
    assert jammed.mean_cn0 is not None and fix.mean_cn0 is not None
    assert jammed.mean_cn0 < fix.mean_cn0 - 20


def test_quirky_log_counts_every_kind_of_bad_line_and_keeps_every_epoch() -> None:
    fixes, log = fixes_of(quirky_log(START, 12))
    assert len(fixes) == 12
    assert [f.fix.label for f in fixes] == [
        "3d",
        "3d",
        "dgps",
        "rtk_fixed",
        "rtk_fixed",
        "rtk_float",
        "dead_reckoning",
        "none",
        "3d",
        "rtk_fixed",
        "rtk_float",
        "3d",
    ]
    rejected = log.parser.stats.rejected
    assert rejected["checksum"] == 1
    assert rejected["truncated"] == 2
    assert rejected["proprietary"] == 2
    assert rejected["unknown"] == 2  # GNTXT, GNGNS
    assert rejected["corrupt"] == 1  # the line of binary noise
    times = [f.iso_time() for f in fixes]
    assert times[0] == "2026-03-14T09:27:25Z" and times[-1] == "2026-03-14T09:27:36Z"


def test_shipped_examples_parse() -> None:
    data = (EXAMPLES / "drive_quirks.nmea").read_bytes()
    log = NmeaLog()
    fixes = list(log.fixes(data.splitlines()))
    assert len(fixes) == 12
    assert log.parser.stats.skipped >= 8


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("$GNGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*00", "checksum"),
        ("$GNGGA,092725.00,4717.11399,N,00833.9", "truncated"),
        ("$PUBX,00,081350.00,4717.113210,N*5C", "proprietary"),
        ("$GNGNS,092321.00,4717.11364,N,00833.91565,E,AAN,12,0.8,499.6,48.0,,*7A", "unknown"),
        ("$XXGGA,092725.00,,,,,0,00,99.99,,,,,,*7A", "unknown"),
        ("no dollar at all", "corrupt"),
        ("$GNGGA" + ",1" * 80 + "*00", "corrupt"),
    ],
)
def test_bad_lines_are_counted_by_reason(line: str, reason: str) -> None:
    parser = NmeaParser()
    assert parser.parse_line(line.encode()) is None
    assert parser.stats.rejected[reason] >= 1
    assert parser.stats.accepted == 0


def test_empty_fields_parse_to_none_not_zero() -> None:
    fixes, log = fixes_of(
        [
            make_sentence("GNRMC,092725.00,V,,,,,,,140326,,,N,V"),
            make_sentence("GNGGA,092725.00,,,,,0,00,99.99,,,,,,"),
            make_sentence("GNVTG,,T,,M,,N,,K,N"),
        ]
    )
    (fix,) = fixes
    assert fix.fix is FixType.NONE
    assert (fix.lat, fix.lon, fix.alt_m, fix.speed_kmh, fix.course_deg) == (None, None, None, None, None)
    assert fix.time_utc_ns is not None
    assert log.parser.stats.skipped == 0


def test_epochs_without_time_are_split_on_repeated_gga() -> None:
    lines = [make_sentence("GNGGA,,4717.11399,N,00833.91590,E,6,04,2.0,400.0,M,48.0,M,,")] * 3
    fixes, _ = fixes_of(lines)
    assert len(fixes) == 3
    assert all(f.fix is FixType.DEAD_RECKONING and f.time_utc_ns is None for f in fixes)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=30))
def test_random_bytes_never_crash_the_parser(lines: list[bytes]) -> None:
    log = NmeaLog()
    list(log.fixes(lines))
    stats = log.parser.stats
    assert stats.accepted + stats.skipped >= 0


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_valid_sentences_never_crash(data: st.DataObject) -> None:
    lines = [s.encode() for s in epoch_sentences(NmeaEpoch(time=START, sats=default_sats()))]
    index = data.draw(st.integers(0, len(lines) - 1))
    line = bytearray(lines[index])
    position = data.draw(st.integers(0, len(line) - 1))
    line[position] = data.draw(st.integers(0, 255))
    lines[index] = bytes(line)
    list(NmeaLog().fixes(lines))


def test_line_splitter_bounds_memory_on_endless_garbage() -> None:
    """An endless line is handed on once (cut to max_pending + 1 bytes: one corrupt line), the
    rest of it dropped up to its end; memory stays bounded and the next line comes through."""
    splitter = LineSplitter(max_pending=100)
    out = [line for _ in range(50) for line in splitter.feed(b"x" * 60)]
    assert out == [b"x" * 101] and splitter.overflows == 1
    assert len(splitter._buffer) <= 100
    assert splitter.feed(b"x\n$A\n") == [b"$A"] and splitter.overflows == 1


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r"])
def test_line_splitter_ends_lines_at_lf_crlf_and_a_lone_cr_in_any_chunking(ending: bytes) -> None:
    data = ending.join([b"$A", b"$B", b"$C"]) + ending
    for size in (1, 2, 3, len(data)):
        splitter = LineSplitter()
        lines = [line for i in range(0, len(data), size) for line in splitter.feed(data[i:i + size])]
        assert [line for line in lines + splitter.flush() if line] == [b"$A", b"$B", b"$C"]


def write_log(path: Path, seconds: int = 5) -> Path:
    lines = [s for epoch in drive(START, seconds) for s in epoch_sentences(epoch)]
    path.write_text("\r\n".join(lines) + "\r\n", "ascii")
    return path


def test_gnss_source_replays_a_file_into_samples_and_fixes(tmp_path: Path) -> None:
    clock = ManualClock()
    fixes: list[GnssFix] = []
    source = GnssSource(
        "gnss", clock, device=str(write_log(tmp_path / "drive.nmea")), on_fix=fixes.append, chunk_bytes=512
    )
    sink = Collect()
    runner = SourceRunner(source, sink)
    for _ in range(100):
        runner.step()
        clock.advance(0.01)
    assert len(fixes) == 5
    by_path = sink.by_path()
    assert len(by_path["Vehicle.CurrentLocation.Latitude"]) == 5
    assert by_path["Vehicle.CurrentLocation.GNSSReceiver.FixType"] == [float(FixType.FIX_3D)] * 5
    assert by_path["Vehicle.CurrentLocation.GNSSReceiver.SpeedOverGround"][0] == pytest.approx(36.0, abs=0.01)
    assert by_path["Vehicle.CurrentLocation.GNSSReceiver.SatellitesUsed"][0] == 9
    assert "Vehicle.CurrentLocation.GNSSReceiver.MeanCN0" in by_path
    assert source.health.state is HealthState.DEGRADED and source.health.detail == "end of replay file"
    assert source.health.frames == 5 * 12  # RMC VTG GGA 3×GSA 4×GSV GST ZDA
    assert source.discipline.quality() is ClockQuality.GNSS


def test_gnss_source_on_a_pty_survives_random_bytes_and_counts_them() -> None:
    master, slave = os.openpty()
    try:
        clock = ManualClock()
        source = GnssSource("gnss", clock, device=os.ttyname(slave), silent_after_s=1.0)
        sink = Collect()
        runner = SourceRunner(source, sink)
        runner.step()
        rng = random.Random(3)
        os.write(master, bytes(rng.randrange(256) for _ in range(2000)) + b"\r\n")
        for line in epoch_sentences(NmeaEpoch(time=START, sats=default_sats())):
            os.write(master, line.encode() + b"\r\n")
        os.write(master, make_sentence("GNGGA,092726.00,,,,,0,00,99.99,,,,,,").encode() + b"\r\n")
        for _ in range(20):
            runner.step()
        assert runner.is_open
        assert source.latest_fix is not None and source.latest_fix.fix is FixType.FIX_3D
        assert source.health.errors >= 1
        assert source.health.state is HealthState.OK
        clock.advance(2.0)
        runner.step()
        assert source.health.detail == "receiver silent"
    finally:
        os.close(master)
        os.close(slave)


def test_missing_device_fails_and_is_retried(tmp_path: Path) -> None:
    clock = ManualClock()
    device = tmp_path / "ttyGNSS"
    source = GnssSource("gnss", clock, device=str(device))
    runner = SourceRunner(source, Collect())
    delay = runner.step()
    assert source.health.state is HealthState.FAILED
    assert "cannot open GNSS device" in source.health.detail
    write_log(device, 1)
    clock.advance(delay)
    runner.step()
    assert runner.is_open and source.health.reconnects == 1


def test_clock_discipline_offset_quality_and_holdover() -> None:
    clock = ManualClock(wall_ns=1_767_225_600_000_000_000)  # 2026-01-01: the RTC is months behind
    steps: list[tuple[int, ClockQuality]] = []
    discipline = ClockDiscipline(
        clock, fallback=ClockQuality.RTC, holdover_s=600, hook=lambda offset, q: steps.append((offset, q))
    )
    assert discipline.quality() is ClockQuality.RTC
    gnss_utc = int(START.timestamp()) * 10**9
    clock.advance(0.2)
    fix = GnssFix(mono_ns=clock.monotonic_ns() - 150_000_000, time_utc_ns=gnss_utc, fix=FixType.FIX_3D)
    assert discipline.observe(fix)
    expected_offset = gnss_utc - (clock.wall_ns() - 150_000_000)
    assert discipline.offset_ns == expected_offset
    assert steps == [(expected_offset, ClockQuality.GNSS)]
    assert discipline.quality() is ClockQuality.GNSS
    assert discipline.wall_ns() == gnss_utc + 150_000_000
    clock.advance(601)
    assert discipline.quality() is ClockQuality.RTC  # holdover expired
    # no position → receiver RTC time, not trusted; a 2006 date (week rollover) neither
    assert not discipline.observe(
        GnssFix(mono_ns=clock.monotonic_ns(), time_utc_ns=gnss_utc, fix=FixType.NONE)
    )
    assert not discipline.observe(
        GnssFix(mono_ns=clock.monotonic_ns(), time_utc_ns=1_150_000_000 * 10**9, fix=FixType.FIX_3D)
    )
    assert discipline.rejected == 2


def test_fix_type_numbers_are_the_protocols() -> None:
    from protocol.messages import FixType as WireFixType

    pairs = {
        FixType.NONE: "NO_FIX",
        FixType.FIX_2D: "FIX_2D",
        FixType.FIX_3D: "FIX_3D",
        FixType.DGPS: "DGNSS",
        FixType.RTK_FLOAT: "RTK_FLOAT",
        FixType.RTK_FIXED: "RTK_FIXED",
        FixType.DEAD_RECKONING: "DEAD_RECKONING",
    }
    assert len(pairs) == len(FixType) == len(WireFixType)
    for ours, name in pairs.items():
        assert ours.to_protocol() is WireFixType[name]


def test_fix_to_protocol_uses_receiver_time_or_agent_time() -> None:
    (fix,), _ = fixes_of(
        epoch_sentences(NmeaEpoch(time=START, quality=4, speed_kmh=50.0, sats=default_sats()))
    )
    wire = fix.to_protocol()
    assert wire is not None
    assert wire.time_ns == int(START.timestamp()) * 10**9
    assert wire.fix_type.name == "RTK_FIXED"
    assert (wire.lat_deg, wire.sats) == (fix.lat, 9)
    no_date = GnssFix(mono_ns=10, lat=1.0, lon=2.0, fix=FixType.FIX_3D)
    assert no_date.to_protocol() is None
    assert no_date.to_protocol(mono_to_wall_ns=1000) is not None
    assert GnssFix(mono_ns=10, fix=FixType.NONE).to_protocol(0) is None


def test_registry_built_gnss_source_hands_fixes_and_clock_offsets_to_the_agent(tmp_path: Path) -> None:
    from edge.sources.registry import SourceContext, build_source

    clock = ManualClock()
    fixes: list[GnssFix] = []
    offsets: list[tuple[int, object]] = []
    context = SourceContext(
        clock=clock,
        on_fix=fixes.append,
        on_clock_discipline=lambda offset, quality: offsets.append((offset, quality)),
    )
    source = build_source(
        {"kind": "gnss", "device": str(write_log(tmp_path / "d.nmea", 3)), "fallback_clock_quality": "ntp"},
        context,
    )
    runner = SourceRunner(source, Collect())
    for _ in range(5):
        runner.step()
    assert len(fixes) == 3
    assert offsets and offsets[0][1] is ClockQuality.GNSS
    assert offsets[0][0] == int(START.timestamp()) * 10**9 - clock.wall_ns()


def test_pty_reads_rest_read_interval_s_unless_a_read_filled_the_chunk() -> None:
    master, slave = os.openpty()
    try:
        source = GnssSource("gnss", ManualClock(), device=os.ttyname(slave), read_interval_s=0.2,
                            chunk_bytes=64)
        source.open()
        sink = Collect()
        assert source.poll(sink) == 0.2  # nothing queued: rest
        lines = b"".join(line.encode() + b"\r\n" for line in epoch_sentences(NmeaEpoch(time=START,
                                                                                         sats=default_sats())))
        assert len(lines) > 3 * 64
        os.write(master, lines)
        delays = []
        for _ in range(len(lines) // 64 + 2):
            delays.append(source.poll(sink))
            if delays[-1] > 0:
                break
        assert delays[:-1] == [0.0] * (len(delays) - 1) and len(delays) > 3  # full chunks: read on at once
        assert delays[-1] == 0.2
        source.close()
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("interval", [0.0, -0.1, 0.3, float("nan"), float("inf")])
def test_read_interval_outside_its_range_is_a_config_error(interval: float) -> None:
    from edge.sources.registry import build_source
    from lienwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="read_interval_s"):
        build_source({"kind": "gnss", "device": "/dev/null", "read_interval_s": interval})
