"""Slow NMEA sentences parsed about once a second (`slow_sentence_interval_s`), fixes unchanged."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.sources.base import SourceRunner
from edge.sources.gnss.fix import FixType, GnssFix
from edge.sources.gnss.nmea import NmeaParser, make_sentence
from edge.sources.gnss.source import GnssSource
from edge.sources.gnss.throttle import SlowSentenceThrottle
from edge.sources.registry import SourceContext, build_source, get_spec
from hil.gnss import NmeaEpoch, default_sats, epoch_sentences
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError

from .conftest import Collect

START = dt.datetime(2026, 3, 14, 9, 27, 25, tzinfo=dt.UTC)
QUALITIES = [1, 4, 4, 5, 4, 2, 4, 5, 6, 4, 1, 4, 5]  # GGA: 3D, RTK fixed/float, DGPS, dead reckoning


def ten_hz(seconds: float, *, start: dt.datetime = START, slow_at_1hz: bool = False,
           change: Callable[[int, NmeaEpoch], None] | None = None) -> list[list[str]]:
    """Epochs of a 10 Hz receiver driving with varying speed, course and RTK state; every sentence
    every epoch, or (`slow_at_1hz`) GSV and ZDA once a second like the agent bench's receiver."""
    epochs = []
    for i in range(round(seconds * 10)):
        epoch = NmeaEpoch(
            time=start + dt.timedelta(milliseconds=100 * i),
            lat=47.2852331 + i * 1e-5, lon=8.565265 - i * 2e-5,
            alt_m=499.6 + i * 0.1, speed_kmh=30.0 + i * 0.7, course_deg=(10.0 + 3.3 * i) % 360,
            quality=QUALITIES[i % len(QUALITIES)], hdop=0.8 + (i % 7) * 0.05, sats=default_sats(40 + i % 5),
        )
        if change is not None:
            change(i, epoch)
        lines = epoch_sentences(epoch)
        if slow_at_1hz and i % 10:
            lines = [s for s in lines if s[3:6] not in ("GSV", "ZDA")]
        epochs.append(lines)
    return epochs


def run(epochs: list[list[str]], interval_s: float, *, jitter_s: float = 0.0,
        sink: Collect | None = None) -> tuple[list[GnssFix], GnssSource]:
    """Feed the epochs to a gnss source with the injected clock moving 0.1 s (± jitter) per epoch."""
    clock = ManualClock()
    source = GnssSource("gnss", clock, device="/dev/null", slow_sentence_interval_s=interval_s)
    rng = random.Random(7)
    fixes: list[GnssFix] = []
    for lines in epochs:
        fixes += source.feed(("\r\n".join(lines) + "\r\n").encode(), sink)
        clock.advance(0.1 + rng.uniform(-jitter_s, jitter_s))
    fixes += source.feed_end()
    return fixes, source


def essentials(fix: GnssFix) -> tuple[Any, ...]:
    """What a fix must carry at every epoch: time, position, speed/course, fix type incl. RTK, GGA."""
    return (fix.time_utc_ns, fix.lat, fix.lon, fix.alt_m, fix.speed_kmh, fix.course_deg, fix.fix, fix.sats,
            fix.hdop, fix.mono_ns)


def test_fixes_keep_their_rate_and_values_and_slow_sentences_are_parsed_once_a_second() -> None:
    epochs = ten_hz(3.0)
    every, _ = run(epochs, 0.0)
    throttled, source = run(epochs, 1.0)
    assert len(every) == len(throttled) == 30
    assert [essentials(f) for f in throttled] == [essentials(f) for f in every]
    assert {f.fix for f in throttled} >= {FixType.RTK_FIXED, FixType.RTK_FLOAT, FixType.DGPS, FixType.FIX_3D}
    assert len({f.speed_kmh for f in throttled}) == 30  # RMC's speed every epoch, not a second's
    parsed, skipped = source.parser.stats.parsed, source.parser.stats.throttled
    assert (parsed["RMC"], parsed["GGA"]) == (30, 30)
    assert (parsed["GSA"], parsed["GSV"], parsed["GST"], parsed["ZDA"]) == (3 * 3, 3 * 4, 3, 3)
    assert parsed["VTG"] == 0 and skipped["VTG"] == 30  # RMC carried speed and course every epoch
    assert (skipped["GSA"], skipped["GSV"], skipped["GST"]) == (27 * 3, 27 * 4, 27)
    stats = source.parser.stats
    assert stats.lines == stats.accepted + sum(skipped.values()) == 30 * 12
    assert stats.skipped == 0
    assert "slow sentences not parsed" in stats.summary()


def test_every_constellations_gsa_of_a_parsed_epoch_is_used_and_reused_until_the_next() -> None:
    epochs = ten_hz(2.0)
    every, _ = run(epochs, 0.0)
    throttled, _ = run(epochs, 1.0)
    for i in (0, 10):  # the epochs that opened a window
        assert throttled[i].reused == frozenset()
        assert throttled[i].constellations == every[i].constellations
        assert throttled[i].h_acc_m == every[i].h_acc_m and throttled[i].pdop == every[i].pdop
    gps, galileo, beidou = (throttled[0].constellations[n] for n in ("gps", "galileo", "beidou"))
    assert (gps.used, galileo.used, beidou.used) == (4, 2, 3)
    assert gps.cn0_dbhz == {3: 40, 4: 37, 7: 42, 9: 32, 16: 40}  # both GPGSV parts
    for i in range(1, 10):
        fix = throttled[i]
        assert fix.reused == {"GSA", "GSV", "GST"}
        assert fix.constellations == throttled[0].constellations  # C/N0 of epoch 0, not epoch i's
        assert fix.constellations != every[i].constellations or i % 5 == 0
        assert (fix.pdop, fix.h_acc_m) == (throttled[0].pdop, throttled[0].h_acc_m)
    assert all(f.reused == frozenset() for f in every)


def test_a_fix_after_a_skipped_gsa_keeps_the_2d_mode_and_dop_and_a_change_shows_within_a_second() -> None:
    def two_d_then_3d(i: int, epoch: NmeaEpoch) -> None:
        epoch.quality, epoch.nav_mode = 1, (2 if i < 13 else 3)
        epoch.hdop = 1.5 if i < 13 else 0.7

    throttled, _ = run(ten_hz(3.0, change=two_d_then_3d), 1.0)
    assert throttled[1].reused >= {"GSA"}
    assert throttled[1].fix is FixType.FIX_2D  # the GSA mode of epoch 0, not a 3D default
    assert throttled[1].pdop == throttled[0].pdop == pytest.approx(1.5 * 1.4)
    assert [f.fix for f in throttled[:20]] == [FixType.FIX_2D] * 20  # 3D from epoch 13, seen at 20
    assert [f.fix for f in throttled[20:]] == [FixType.FIX_3D] * 10
    assert throttled[15].hdop == pytest.approx(0.7)  # HDOP is GGA's: always this epoch's


def test_gsv_sent_once_a_second_is_never_skipped_despite_arrival_jitter() -> None:
    epochs = ten_hz(6.0, slow_at_1hz=True)
    every, _ = run(epochs, 0.0, jitter_s=0.045)
    throttled, source = run(epochs, 1.0, jitter_s=0.045)
    assert source.parser.stats.throttled["GSV"] == source.parser.stats.throttled["ZDA"] == 0
    assert source.parser.stats.parsed["GSV"] == 6 * 4
    assert source.parser.stats.parsed["GSA"] == 6 * 3
    assert not any("GSV" in f.reused for f in throttled)  # sent once a second: nothing to reuse
    assert [f.constellations for f in throttled[::10]] == [f.constellations for f in every[::10]]
    assert [f.mean_cn0 for f in throttled] == [f.mean_cn0 for f in every]
    assert sum(f.mean_cn0 is not None for f in throttled) == 6
    assert [essentials(f) for f in throttled] == [essentials(f) for f in every]


def test_samples_at_10hz_accuracy_and_cn0_only_when_parsed() -> None:
    epochs = ten_hz(2.0)
    every_sink, throttled_sink = Collect(), Collect()
    run(epochs, 0.0, sink=every_sink)
    run(epochs, 1.0, sink=throttled_sink)
    every, throttled = every_sink.by_path(), throttled_sink.by_path()
    for path in ("Latitude", "Longitude", "Heading", "GNSSReceiver.FixType", "GNSSReceiver.SpeedOverGround",
                 "GNSSReceiver.SatellitesUsed", "GNSSReceiver.HDOP"):
        key = f"Vehicle.CurrentLocation.{path}"
        assert throttled[key] == every[key] and len(throttled[key]) == 19  # the 20th: closed by feed_end
    hacc, cn0 = "Vehicle.CurrentLocation.HorizontalAccuracy", "Vehicle.CurrentLocation.GNSSReceiver.MeanCN0"
    assert throttled[hacc] == every[hacc][::10] and throttled[cn0] == every[cn0][::10]


def test_vtg_is_parsed_every_epoch_when_it_is_the_only_speed() -> None:
    def no_rmc(epochs: list[list[str]]) -> list[list[str]]:  # GGA first: it opens the epoch VTG belongs to
        return [[lines[2], lines[1], *lines[3:]] for lines in epochs]

    epochs = no_rmc(ten_hz(2.0))
    every, _ = run(epochs, 0.0)
    throttled, source = run(epochs, 1.0)
    assert [(f.speed_kmh, f.course_deg) for f in throttled] == [(f.speed_kmh, f.course_deg) for f in every]
    assert all(f.speed_kmh is not None for f in throttled)
    assert source.parser.stats.parsed["VTG"] == 20 and source.parser.stats.throttled["VTG"] == 0
    # RMC without speed/course (empty fields): VTG's are used, so it is parsed
    rmc = make_sentence("GNRMC,092725.00,A,4717.11399,N,00833.91590,E,,,140326,,,A,V")
    vtg = make_sentence("GNVTG,45.0,T,,M,27.0,N,50.0,K,A")
    parser = NmeaParser(SlowSentenceThrottle(1.0, ManualClock()))
    assert parser.parse_line(rmc.encode()) is not None
    sentence = parser.parse_line(vtg.encode())
    assert sentence is not None and sentence.parsed
    # with speed and course in the same epoch's RMC, VTG (whose values RMC's win over) is not parsed
    assert parser.parse_line(make_sentence("GNRMC,092725.00,A,4717.11399,N,00833.91590,E,27.0,45.0,"
                                           "140326,,,A,V").encode()) is not None
    sentence = parser.parse_line(vtg.encode())
    assert sentence is not None and not sentence.parsed and sentence.get("sogk") is None


def test_epochs_without_time_are_throttled_by_the_injected_clock() -> None:
    gga = make_sentence("GNGGA,,4717.11399,N,00833.91590,E,1,04,2.0,400.0,M,48.0,M,,")
    gsa = make_sentence("GNGSA,A,2,03,04,07,,,,,,,,,,2.80,2.00,2.20,1")
    epochs = [[gga, gsa]] * 25
    throttled, source = run(epochs, 1.0)
    assert len(throttled) == 25
    assert source.parser.stats.parsed["GSA"] == 3  # clock at 0, 1.0, 2.0 s
    assert [f.fix for f in throttled] == [FixType.FIX_2D] * 25  # GSA's 2D mode, reused
    assert [f.constellations["gps"].used for f in throttled] == [3] * 25


def test_the_interval_counts_across_midnight_and_restarts_when_a_replay_goes_back() -> None:
    midnight = dt.datetime(2026, 3, 14, 23, 59, 59, tzinfo=dt.UTC)
    epochs = ten_hz(2.5, start=midnight)
    throttled, source = run(epochs + ten_hz(0.5, start=midnight), 1.0)
    assert [i for i, f in enumerate(throttled) if "GSA" not in f.reused] == [0, 10, 20, 25]
    assert source.parser.stats.parsed["GSA"] == 4 * 3


def test_bad_lines_of_skipped_types_are_still_counted() -> None:
    epochs = ten_hz(1.0)
    gsa = epochs[4][3]
    epochs[4][3] = gsa[:-2] + ("00" if gsa[-2:] != "00" else "01")  # a bad checksum on a skipped GSA
    epochs[5].insert(4, epochs[5][4][:25])  # a truncated GSA
    throttled, source = run(epochs, 1.0)
    assert len(throttled) == 10
    rejected = source.parser.stats.rejected
    assert (rejected["checksum"], rejected["truncated"]) == (1, 1)
    assert source.health.errors == 2
    assert source.parser.stats.throttled["GSA"] == 9 * 3 - 1  # the bad-checksum one is not among them


def test_health_counts_skipped_sentences(tmp_path: Path) -> None:
    log = tmp_path / "tenhz.nmea"
    log.write_text("".join(s + "\r\n" for lines in ten_hz(2.0) for s in lines), "ascii")
    clock = ManualClock()
    source = build_source({"kind": "gnss", "device": str(log)}, SourceContext(clock=clock))
    runner = SourceRunner(source, Collect())
    for _ in range(50):
        runner.step()
    counters = source.health.counters
    assert isinstance(source, GnssSource)
    assert counters["sentences_skipped"] == sum(source.parser.stats.throttled.values()) > 0
    assert counters["epochs"] == 20


@pytest.mark.parametrize("value", [-0.5, -1, math.nan, math.inf, "1s", True, None, [1.0]])
def test_the_option_refuses_what_is_not_a_finite_interval(value: object) -> None:
    with pytest.raises(ConfigError, match="slow_sentence_interval_s"):
        build_source({"kind": "gnss", "device": "/dev/null", "slow_sentence_interval_s": value},
                     SourceContext(clock=ManualClock()))
    with pytest.raises(ConfigError, match="slow_sentence_interval_s"):
        GnssSource("gnss", ManualClock(), device="/dev/null", slow_sentence_interval_s=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "throttles"), [(0, False), (0.0, False), (2, True), (1.0, True)])
def test_the_option_accepts_numbers_and_zero_parses_everything(value: float, throttles: bool) -> None:
    source = build_source({"kind": "gnss", "device": "/dev/null", "slow_sentence_interval_s": value},
                          SourceContext(clock=ManualClock()))
    assert isinstance(source, GnssSource)
    assert (source.parser.throttle is not None) is throttles


def test_the_option_is_in_the_sample_config() -> None:
    assert "slow_sentence_interval_s = 1.0" in get_spec("gnss").sample_config()
