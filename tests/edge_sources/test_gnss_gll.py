"""An epoch whose only position is in GLL (no GGA or RMC that second) still yields a fix."""

from __future__ import annotations

import pytest

from edge.sources.gnss.fix import FixType, GnssFix
from edge.sources.gnss.nmea import make_sentence
from edge.sources.gnss.source import NmeaLog


def _fixes(bodies: list[str]) -> list[GnssFix]:
    log = NmeaLog()
    lines = [make_sentence(body).encode("ascii") for body in bodies]
    return list(log.fixes(lines))


def test_gll_only_epochs_yield_fixes_with_position_and_time() -> None:
    fixes = _fixes([
        "GNGLL,4717.11399,N,00833.91590,E,092725.00,A,A",
        "GNGSA,A,3,01,02,03,04,,,,,,,,,1.5,0.9,1.2",
        "GNGLL,4717.11500,N,00833.91700,E,092726.00,A,D",
        "GNGLL,3351.12340,S,15112.56780,W,092727.00,A,A",
    ])
    assert len(fixes) == 3
    first, second, third = fixes
    assert first.lat == pytest.approx(47 + 17.11399 / 60, abs=1e-9)
    assert first.lon == pytest.approx(8 + 33.91590 / 60, abs=1e-9)
    assert first.time_of_day is not None and first.time_of_day.second == 25
    assert first.fix is FixType.FIX_3D and first.fix.has_position
    assert second.fix is FixType.DGPS
    assert third.lat == pytest.approx(-(33 + 51.1234 / 60))
    assert third.lon == pytest.approx(-(151 + 12.5678 / 60))


def test_gll_with_status_void_gives_no_fix_and_gga_position_wins_when_both_are_sent() -> None:
    void, both = _fixes([
        "GNGLL,,,,,092725.00,V,N",
        "GNGGA,092726.00,4717.11399,N,00833.91590,E,1,12,0.8,408.3,M,47.0,M,,",
        "GNGLL,4800.00000,N,00900.00000,E,092726.00,A,A",
        "GNGLL,4800.00000,N,00900.00000,E,092727.00,V,N",
    ])[:2]
    assert void.fix is FixType.NONE and void.lat is None
    assert both.lat == pytest.approx(47 + 17.11399 / 60, abs=1e-9)
    assert both.alt_m == pytest.approx(408.3)


def test_a_gll_only_log_is_not_dropped_by_the_slow_sentence_throttle() -> None:
    from edge.sources.gnss.throttle import ALWAYS_PARSED

    assert "GLL" in ALWAYS_PARSED
