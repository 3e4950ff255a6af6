"""Scenario files (`hil/scenarios/*.toml`): a timeline for the emulated car and what the lender must see.

    name = "night tow"
    start = 2026-01-05T17:30:00+01:00     # a TOML offset date-time (or a string in ISO 8601)
    [[timeline]]
    do = "drive"                          # one of ACTIONS, with that action's keys
    minutes = 20                          # seconds / minutes / hours / days, or until = "02:00" (local)
    speed_kmh = 50
    [[timeline]]
    do = "tow"
    mark = "tow"                          # this step's start is the onset latencies are measured from
    minutes = 4
    [[expect.event]]
    detector = "tow"                      # an edge/detect detector kind
    severity = "EMERGENCY"                # the highest severity it must reach
    after = "tow"                         # raised at or after this mark ...
    within_s = 60                         # ... within this many simulated seconds
    cleared = false                       # must it have been cleared by the end (omit: either)
    [expect]
    other_alarms = false                  # nothing else at ALERT or above (the default)
    exactly_once = true                   # every record the agent accepted is stored once (default)
    [expect.energy]                       # the agent's own energy accounting at the end
    max_mah = 2200
    min_soc_pct = 60

A file with an error is refused with a `ScenarioError` naming the file, the line and the reason.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lienwatch.errors import LienwatchError
from lienwatch.tomlfile import parse_toml

SEVERITIES = ("WARNING", "ALERT", "EMERGENCY")
DETECTORS = ("battery", "driving", "geofence", "gnss_jamming", "night_cabin", "odometer", "risky_places",
             "tamper", "tow", "unplug", "usage", "mcu", "starter_interrupt")
# `do = "command"`: what a risk officer sends through the API (POST /devices/{id}/commands)
COMMANDS = ("arm_starter_interrupt", "release_starter_interrupt")
INTERRUPT_STATES = ("RELEASED", "ARMED", "ENGAGED", "OVERRIDDEN")
_DURATION_KEYS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0}
_NUM = (int, float)

# action -> {key: (type(s), required)}; every step may also have `mark` and a duration.
ACTIONS: dict[str, dict[str, tuple[Any, bool]]] = {
    "drive": {"speed_kmh": (_NUM, False), "course_deg": (_NUM, False), "to": (list, False),
              "stop_and_go": (bool, False)},
    "park": {"garage": (bool, False)},
    "tow": {"speed_kmh": (_NUM, False), "course_deg": (_NUM, False), "tilt_deg": (_NUM, False),
            "vibration_ms2": (_NUM, False)},
    "wait": {},
    "tunnel": {},
    "unplug": {}, "plug": {},
    "jam": {"cn0": (_NUM, False), "fix": (bool, False)},
    "unjam": {},
    "spoof": {"jump_km": (_NUM, True)},
    "multipath": {"jump_m": (_NUM, True)},
    "rtk": {"mode": (str, True)},
    "doors": {"count": (int, True), "open_s": (_NUM, False), "closed_s": (_NUM, False)},
    "odometer": {"rollback_km": (_NUM, True)},
    "battery": {"resting_v": (_NUM, False), "decay_v_per_day": (_NUM, False)},
    "bus_garbage": {"frames_per_s": (_NUM, True)},
    "broker_down": {}, "broker_up": {},
    "kill_agent": {},
    "crash": {"g": (_NUM, False)},
    "bump": {"g": (_NUM, False)},
    "place": {"lat": (_NUM, True), "lon": (_NUM, True)},
    "command": {"command": (str, True), "reason": (str, True)},
}
_RTK_MODES = ("fixed", "float", "off")


class ScenarioError(LienwatchError):
    """A scenario file that cannot be played: names the file, the line and the reason."""


@dataclass(frozen=True)
class Step:
    """One timeline entry: an action, its options, how long the car then runs (0 = instant)."""

    action: str
    options: dict[str, Any]
    seconds: float = 0.0
    until: str | None = None  # local "HH:MM": run until the next such time instead
    mark: str | None = None
    line: int = 0


@dataclass(frozen=True)
class ExpectedEvent:
    detector: str
    severity: str
    after: str | None = None
    within_s: float | None = None
    cleared: bool | None = None
    line: int = 0


@dataclass(frozen=True)
class ExpectedInterrupt:
    """`[expect.starter_interrupt]`: the state GET /devices/{id} shows at the end, and the order of
    the interrupt's events: armed at or after `armed_after`, engaged no sooner than `hold_s` after
    `engaged_after` (the car parked) and within `within_s` of it."""

    state: str
    armed_after: str | None = None
    engaged_after: str | None = None
    within_s: float | None = None
    line: int = 0


@dataclass(frozen=True)
class Scenario:
    """A parsed, checked scenario file."""

    name: str
    path: Path
    start_ns: int
    time_zone: str
    summary: str
    steps: tuple[Step, ...]
    events: tuple[ExpectedEvent, ...]
    other_alarms: bool = False
    allowed: frozenset[str] = frozenset()  # detectors that may raise ALERT+ besides the expected ones
    exactly_once: bool = True
    energy: dict[str, float] = field(default_factory=dict)
    vehicle: dict[str, Any] = field(default_factory=dict)
    home: tuple[float, float] = (47.3769, 8.5417)
    interrupt: ExpectedInterrupt | None = None

    @property
    def commands(self) -> bool:
        """Does the timeline send commands (the bench then gives the agent a starter-interrupt relay)?"""
        return any(s.action == "command" for s in self.steps)

    @property
    def marks(self) -> list[str]:
        return [s.mark for s in self.steps if s.mark]


def _lines_of(text: str, header: str) -> list[int]:
    """1-based line numbers of each `[[header]]` table in `text`."""
    pattern = re.compile(rf"^\s*\[\[\s*{re.escape(header)}\s*\]\]")
    return [n for n, line in enumerate(text.splitlines(), 1) if pattern.match(line)]


def _line_of_key(text: str, key: str) -> int:
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    return next((n for n, line in enumerate(text.splitlines(), 1) if pattern.match(line)), 0)


class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, line: int, reason: str) -> ScenarioError:
        where = f"{self.path}:{line}" if line else str(self.path)
        return ScenarioError(f"{where}: {reason}")

    def typed(self, table: dict[str, Any], key: str, kind: Any, line: int, what: str) -> Any:
        value = table[key]
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple)
                                                                         else (kind,)):
            raise self.fail(line, f"{what}.{key} must be a {_kind_name(kind)}, not {value!r}")
        if not isinstance(value, kind):
            raise self.fail(line, f"{what}.{key} must be a {_kind_name(kind)}, not {value!r}")
        return value


def _kind_name(kind: Any) -> str:
    if kind == _NUM:
        return "number"
    return {bool: "boolean", str: "string", list: "list", int: "whole number"}.get(kind, str(kind))


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file; `ScenarioError` (file:line: reason) on any error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read: {error}") from None
    return parse_scenario(text, path)


def parse_scenario(text: str, path: Path = Path("<scenario>")) -> Scenario:
    check = _Checker(path, text)
    try:
        doc = parse_toml(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"line (\d+)", str(error))
        raise check.fail(int(match.group(1)) if match else 0, f"not valid TOML: {error}") from None
    known = {"name", "summary", "start", "time_zone", "timeline", "expect", "vehicle", "home"}
    for key in doc:
        if key not in known:
            raise check.fail(_line_of_key(text, key),
                             f"unknown key {key!r} (known: {', '.join(sorted(known))})")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise check.fail(_line_of_key(text, "name"), "name must be a non-empty string")
    time_zone = doc.get("time_zone", "Europe/Zurich")
    try:
        zone = ZoneInfo(str(time_zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise check.fail(_line_of_key(text, "time_zone"), f"unknown time zone {time_zone!r}") from None
    start_ns = _start_ns(check, doc.get("start"), zone)
    home = doc.get("home", [47.3769, 8.5417])
    if (not isinstance(home, list) or len(home) != 2 or not all(isinstance(v, _NUM) for v in home)
            or not (-90 <= home[0] <= 90 and -180 <= home[1] <= 180)):
        raise check.fail(_line_of_key(text, "home"), "home must be [lat, lon] in degrees")
    steps = _steps(check, doc.get("timeline"))
    expect = doc.get("expect", {})
    if not isinstance(expect, dict):
        raise check.fail(_line_of_key(text, "expect"), "expect must be a table")
    marks = {s.mark for s in steps if s.mark}
    events = _events(check, expect.get("event", []), marks)
    for key in expect:
        if key not in ("event", "other_alarms", "allowed", "exactly_once", "energy", "starter_interrupt"):
            raise check.fail(_line_of_key(text, key), f"unknown key expect.{key}")
    allowed = expect.get("allowed", [])
    if not isinstance(allowed, list) or any(a not in DETECTORS for a in allowed):
        raise check.fail(_line_of_key(text, "allowed"), f"expect.allowed must list detectors of {DETECTORS}")
    energy = expect.get("energy", {})
    if not isinstance(energy, dict) or any(k not in ("max_mah", "min_soc_pct", "max_soc_pct", "max_avg_ma") or
                                           not isinstance(v, _NUM) or isinstance(v, bool)
                                           for k, v in energy.items()):
        raise check.fail(_line_of_key(text, "max_mah") or _line_of_key(text, "min_soc_pct"),
                         "expect.energy takes numbers: max_mah, min_soc_pct, max_soc_pct, max_avg_ma")
    for key in ("other_alarms", "exactly_once"):
        if key in expect and not isinstance(expect[key], bool):
            raise check.fail(_line_of_key(text, key), f"expect.{key} must be true or false")
    interrupt = _interrupt(check, expect.get("starter_interrupt"), marks)
    vehicle = doc.get("vehicle", {})
    if not isinstance(vehicle, dict):
        raise check.fail(_line_of_key(text, "vehicle"), "vehicle must be a table (the agent's [vehicle])")
    return Scenario(name=name, path=path, start_ns=start_ns, time_zone=str(time_zone),
                    summary=str(doc.get("summary", "")), steps=tuple(steps), events=tuple(events),
                    other_alarms=bool(expect.get("other_alarms", False)), allowed=frozenset(allowed),
                    exactly_once=bool(expect.get("exactly_once", True)),
                    energy={k: float(v) for k, v in energy.items()}, vehicle=dict(vehicle),
                    home=(float(home[0]), float(home[1])), interrupt=interrupt)


def _start_ns(check: _Checker, value: Any, zone: ZoneInfo) -> int:
    line = _line_of_key(check.text, "start")
    if value is None:
        raise check.fail(0, "start is missing (e.g. start = 2026-01-05T07:30:00+01:00)")
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise check.fail(line, f"start {value!r} is not an ISO 8601 date-time") from None
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return int(when.timestamp()) * 10**9 + when.microsecond * 1000
    raise check.fail(line, f"start must be a date-time, not {value!r}")


def _steps(check: _Checker, timeline: Any) -> list[Step]:
    if not isinstance(timeline, list) or not timeline:
        raise check.fail(0, "timeline is missing: add [[timeline]] steps")
    lines = _lines_of(check.text, "timeline")
    steps: list[Step] = []
    seen_marks: set[str] = set()
    for index, table in enumerate(timeline):
        line = lines[index] if index < len(lines) else 0
        what = f"timeline[{index + 1}]"
        action = table.get("do")
        if action not in ACTIONS:
            raise check.fail(line, f"{what}: do = {action!r} is not an action (one of {', '.join(ACTIONS)})")
        schema = ACTIONS[action]
        options: dict[str, Any] = {}
        seconds, until, mark = 0.0, None, None
        durations = [k for k in (*_DURATION_KEYS, "until") if k in table]
        if len(durations) > 1:
            raise check.fail(line, f"{what}: give one of {', '.join(durations)}, not several")
        for key, value in table.items():
            if key == "do":
                continue
            if key in _DURATION_KEYS:
                check.typed(table, key, _NUM, line, what)
                if value < 0 or value != value:
                    raise check.fail(line, f"{what}.{key} must be >= 0")
                seconds = float(value) * _DURATION_KEYS[key]
            elif key == "until":
                if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
                    raise check.fail(line, f"{what}.until must be a local time \"HH:MM\", not {value!r}")
                until = value
            elif key == "mark":
                if not isinstance(value, str) or not value:
                    raise check.fail(line, f"{what}.mark must be a name")
                if value in seen_marks:
                    raise check.fail(line, f"{what}: mark {value!r} is used twice")
                seen_marks.add(value)
                mark = value
            elif key in schema:
                options[key] = check.typed(table, key, schema[key][0], line, what)
            elif key == "tick_s":  # any step that runs: the simulation step, seconds
                options[key] = check.typed(table, key, _NUM, line, what)
            else:
                allowed = ", ".join([*schema, "mark", "tick_s", *_DURATION_KEYS, "until"])
                raise check.fail(line, f"{what}: {action} has no option {key!r} (it takes: {allowed})")
        for key, (_, required) in schema.items():
            if required and key not in options:
                raise check.fail(line, f"{what}: {action} needs {key}")
        _check_values(check, action, options, line, what)
        steps.append(Step(action, options, seconds, until, mark, line))
    return steps


def _check_values(check: _Checker, action: str, options: dict[str, Any], line: int, what: str) -> None:
    for key in ("speed_kmh", "tick_s", "count", "frames_per_s", "jump_km", "jump_m", "rollback_km",
                "open_s", "closed_s", "g"):
        if key in options and not options[key] >= 0:
            raise check.fail(line, f"{what}.{key} must be >= 0")
    if options.get("speed_kmh", 0) > 300:
        raise check.fail(line, f"{what}.speed_kmh {options['speed_kmh']} is not a car's speed (<= 300)")
    if "tick_s" in options and not 0.05 <= options["tick_s"] <= 3600:
        raise check.fail(line, f"{what}.tick_s must be within 0.05..3600 s")
    if action == "rtk" and options["mode"] not in _RTK_MODES:
        raise check.fail(line, f"{what}.mode must be one of {_RTK_MODES}")
    if "to" in options:
        to = options["to"]
        if len(to) != 2 or not all(isinstance(v, _NUM) for v in to):
            raise check.fail(line, f"{what}.to must be [lat, lon]")
    if action == "command":
        if options["command"] not in COMMANDS:
            raise check.fail(line, f"{what}.command {options['command']!r} is not a command "
                                   f"({', '.join(COMMANDS)})")
        if not options["reason"].strip() or len(options["reason"]) > 500:
            raise check.fail(line, f"{what}.reason must be a text of 1..500 characters (it is audited)")
    if action == "place" and not (-90 <= options["lat"] <= 90 and -180 <= options["lon"] <= 180):
        raise check.fail(line, f"{what}: lat/lon out of range")


def _events(check: _Checker, tables: Any, marks: set[str]) -> list[ExpectedEvent]:
    if not isinstance(tables, list):
        raise check.fail(_line_of_key(check.text, "event"), "expect.event must be [[expect.event]] tables")
    lines = _lines_of(check.text, "expect.event")
    out: list[ExpectedEvent] = []
    for index, table in enumerate(tables):
        line = lines[index] if index < len(lines) else 0
        what = f"expect.event[{index + 1}]"
        for key in table:
            if key not in ("detector", "severity", "after", "within_s", "cleared"):
                raise check.fail(line, f"{what}: unknown key {key!r}")
        detector, severity = table.get("detector"), table.get("severity")
        if detector not in DETECTORS:
            raise check.fail(line, f"{what}.detector {detector!r} is not a detector ({', '.join(DETECTORS)})")
        if severity not in SEVERITIES:
            raise check.fail(line, f"{what}.severity must be one of {SEVERITIES}, not {severity!r}")
        after = table.get("after")
        if after is not None and after not in marks:
            raise check.fail(line, f"{what}.after = {after!r} names no timeline mark "
                                   f"(marks: {', '.join(sorted(marks)) or 'none'})")
        within = table.get("within_s")
        if within is not None and (not isinstance(within, _NUM) or isinstance(within, bool) or within <= 0):
            raise check.fail(line, f"{what}.within_s must be a number > 0")
        if within is not None and after is None:
            raise check.fail(line, f"{what}.within_s needs after = MARK (the onset it is measured from)")
        cleared = table.get("cleared")
        if cleared is not None and not isinstance(cleared, bool):
            raise check.fail(line, f"{what}.cleared must be true or false")
        out.append(ExpectedEvent(detector, severity, after, None if within is None else float(within),
                                 cleared, line))
    return out


def _interrupt(check: _Checker, table: Any, marks: set[str]) -> ExpectedInterrupt | None:
    if table is None:
        return None
    line = next((n for n, text in enumerate(check.text.splitlines(), 1)
                 if re.match(r"^\s*\[\s*expect\.starter_interrupt\s*\]", text)), 0)
    what = "expect.starter_interrupt"
    if not isinstance(table, dict):
        raise check.fail(line, f"{what} must be a table")
    for key in table:
        if key not in ("state", "armed_after", "engaged_after", "within_s"):
            raise check.fail(line, f"{what}: unknown key {key!r}")
    state = table.get("state")
    if state not in INTERRUPT_STATES:
        raise check.fail(line, f"{what}.state must be one of {INTERRUPT_STATES}, not {state!r}")
    for key in ("armed_after", "engaged_after"):
        mark = table.get(key)
        if mark is not None and mark not in marks:
            raise check.fail(line, f"{what}.{key} = {mark!r} names no timeline mark "
                                   f"(marks: {', '.join(sorted(marks)) or 'none'})")
    within = table.get("within_s")
    if within is not None and (not isinstance(within, _NUM) or isinstance(within, bool) or within <= 0):
        raise check.fail(line, f"{what}.within_s must be a number > 0")
    if within is not None and table.get("engaged_after") is None:
        raise check.fail(line, f"{what}.within_s needs engaged_after = MARK (the parking it is "
                               "measured from)")
    return ExpectedInterrupt(str(state), table.get("armed_after"), table.get("engaged_after"),
                             None if within is None else float(within), line)
