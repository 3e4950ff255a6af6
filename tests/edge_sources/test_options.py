"""Numbers in [[sources]] tables: finite, durations not negative, periods positive (edge/options.py)."""

from __future__ import annotations

import math

import pytest

from edge.sources.registry import SourceContext, build_source
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError
from protocol.catalog import default_catalog

OBD = {"kind": "obd", "interface": "virtual", "channel": "x"}


@pytest.mark.parametrize(("table", "message"), [
    ({"kind": "gnss", "device": "/dev/null", "silent_after_s": math.nan}, "silent_after_s must be a finite"),
    ({"kind": "gnss", "device": "/dev/null", "no_fix_after_s": math.inf}, "no_fix_after_s must be a finite"),
    ({"kind": "gnss", "device": "/dev/null", "silent_after_s": -5.0}, "silent_after_s must be >= 0"),
    ({**OBD, "timeout_s": math.nan}, "timeout_s must be a finite"),
    ({**OBD, "timeout_s": -1.0}, "timeout_s must be >= 0"),
    ({**OBD, "max_bus_load": math.inf}, "must be a finite"),
    ({**OBD, "dtc_period_s": 0.0}, "dtc_period_s must be > 0"),
    ({"kind": "power", "period_s": math.nan}, "sources.power.period_s must be a finite"),
    ({"kind": "power", "period_s": -1.0}, "sources.power.period_s must be > 0"),
    ({"kind": "power", "external_min_v": -math.inf}, "external_min_v must be a finite"),
])
def test_source_numbers_must_be_finite_and_durations_not_negative(
        table: dict[str, object], message: str) -> None:
    context = SourceContext(clock=ManualClock(), catalog=default_catalog())
    with pytest.raises(ConfigError, match=message):
        build_source(table, context)
