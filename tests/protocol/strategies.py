"""Hypothesis strategies for valid lienwatch messages (values on the wire grid, so they round-trip)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from protocol.catalog import default_catalog
from protocol.limits import INT63_MAX, MAX_SPAN_MS, MAX_TIME_MS, UINT32_MAX
from protocol.messages import (
    AckStatus,
    ArmStarterInterrupt,
    ClearEvent,
    ClearGeofence,
    ClockQuality,
    Command,
    CommandAck,
    Config,
    Event,
    FixColumns,
    FixType,
    Geofence,
    GnssFix,
    Header,
    InterruptState,
    PaymentReminder,
    PowerState,
    Reboot,
    ReleaseStarterInterrupt,
    ReminderPattern,
    RequestPosition,
    SampleColumns,
    SetConfig,
    SetGeofence,
    Severity,
    StartDiagnosticSession,
    Status,
    StopDiagnosticSession,
    TelemetryBatch,
    Transition,
)

MS = 1_000_000
device_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
# Text fields may hold any character but U+0000 (refused: no store can keep it).
_chars = st.characters(blacklist_characters="\x00", codec="utf-8")  # no lone surrogates
names = st.text(_chars, min_size=1, max_size=64)
finite = st.floats(allow_nan=False, allow_infinity=False)
times_ns = st.integers(0, MAX_TIME_MS).map(lambda ms: ms * MS)


def grid(lo: int, hi: int, scale: float) -> st.SearchStrategy[float]:
    return st.integers(lo, hi).map(lambda i: i / scale)


headers = st.builds(Header, device_ids, st.integers(0, UINT32_MAX), st.integers(0, INT63_MAX),
                    st.integers(0, MAX_TIME_MS * MS), st.sampled_from(ClockQuality))
fixes = st.builds(
    GnssFix, times_ns, grid(-900_000_000, 900_000_000, 1e7), grid(-1_800_000_000, 1_800_000_000, 1e7),
    grid(-10_000, 200_000, 10), grid(0, 100_000, 100), grid(0, 3599, 10), grid(0, 9999, 100),
    st.integers(0, 255), st.sampled_from(FixType),
)
COLUMN_RANGES = {  # field: (lo, hi, scale) on the wire grid
    "lat_deg": (-900_000_000, 900_000_000, 1e7), "lon_deg": (-1_800_000_000, 1_800_000_000, 1e7),
    "alt_m": (-10_000, 200_000, 10), "speed_kmh": (0, 100_000, 100), "heading_deg": (0, 3599, 10),
    "hdop": (0, 9999, 100),
}


@st.composite
def column(draw: Any, n: int, lo: int, hi: int) -> list[int]:
    """Either wild values anywhere in range, or a smooth walk (exercising both spill planes)."""
    if draw(st.booleans()):
        wild: list[int] = draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
        return wild
    value: int = draw(st.integers(lo, hi))
    step, out = 0, []
    for _ in range(n):
        step += draw(st.integers(-200, 200))
        value = min(hi, max(lo, value + step))
        out.append(value)
    return out


@st.composite
def batches(draw: Any, max_fixes: int = 40, max_samples: int = 40) -> TelemetryBatch:
    t0 = draw(st.integers(0, MAX_TIME_MS - MAX_SPAN_MS))
    n = draw(st.integers(0, max_fixes))
    columns: dict[str, tuple[Any, ...]] = {
        "time_ns": tuple((t0 + t) * MS for t in draw(column(n, 0, MAX_SPAN_MS))),
        "sats": tuple(draw(column(n, 0, 255))),
        "fix_type": tuple(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))),
    }
    for name, (lo, hi, scale) in COLUMN_RANGES.items():
        columns[name] = tuple(v / scale for v in draw(column(n, lo, hi)))
    catalog = default_catalog()
    ns = draw(st.integers(0, max_samples))
    signals = draw(st.lists(st.sampled_from(catalog.signals), min_size=ns, max_size=ns))
    values = []
    for signal in signals:
        raw = draw(st.integers(0, 1) if signal.type == "bool" else st.integers(-(2**40), 2**40))
        values.append(raw / round(1 / signal.resolution))
    samples = SampleColumns(
        tuple((t0 + t) * MS for t in draw(st.lists(st.integers(0, MAX_SPAN_MS), min_size=ns, max_size=ns))),
        tuple(s.id for s in signals), tuple(values),
    )
    return TelemetryBatch(draw(headers), FixColumns(**columns), samples, catalog.version)


events = st.builds(Event, headers, st.integers(0, INT63_MAX), st.sampled_from(Severity), names,
                   st.integers(0, MAX_TIME_MS * MS), st.dictionaries(names, finite, max_size=8),
                   st.none() | fixes, st.text(_chars, max_size=256), st.sampled_from(Transition),
                   st.none() | st.integers(0, MAX_TIME_MS * MS), st.just("") | names)
statuses = st.builds(
    Status, headers, st.sampled_from(PowerState), grid(0, 65535, 1000), grid(0, 65535, 1000),
    st.text(_chars, max_size=64), st.integers(0, UINT32_MAX), st.integers(0, UINT32_MAX),
    st.integers(0, 2**48),
    st.integers(0, UINT32_MAX), st.none() | grid(0, 3_650_000, 100), st.none() | grid(0, 10_000_000, 100),
    st.none() | st.integers(-200, 0), st.none() | fixes,
)
acks = st.builds(CommandAck, headers, st.binary(min_size=16, max_size=16), st.sampled_from(AckStatus),
                 st.text(_chars, max_size=256), st.none() | fixes,
                 st.none() | st.sampled_from(InterruptState))
setting_values = st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text(_chars, max_size=256)
configs = st.builds(Config, st.integers(0, UINT32_MAX), st.dictionaries(names, setting_values, max_size=12))
geofences = st.builds(Geofence, st.integers(0, UINT32_MAX), grid(-900_000_000, 900_000_000, 1e7),
                      grid(-1_800_000_000, 1_800_000_000, 1e7), grid(1, 100_000_000, 10))
actions = st.one_of(
    st.builds(SetConfig, configs), st.just(RequestPosition()), st.just(Reboot()),
    st.just(StopDiagnosticSession()), st.builds(SetGeofence, geofences),
    st.builds(ClearEvent, st.integers(0, INT63_MAX)),
    st.builds(ClearGeofence, st.none() | st.integers(0, UINT32_MAX)),
    st.builds(StartDiagnosticSession, st.integers(1, 7 * 86400)),
    st.just(ArmStarterInterrupt()), st.just(ReleaseStarterInterrupt()),
    st.builds(PaymentReminder, st.dates(dt.date(2000, 1, 1), dt.date(2999, 12, 31)).map(dt.date.isoformat),
              st.sampled_from(ReminderPattern)),
)
commands = st.builds(Command, device_ids, st.binary(min_size=16, max_size=16),
                     st.integers(0, MAX_TIME_MS * MS), st.integers(0, MAX_TIME_MS * MS), actions)
messages = st.one_of(batches(), events, statuses, acks, configs, commands)
