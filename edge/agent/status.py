"""The local status file the agent rewrites and `lienwatch edge status` reads.

Written atomically (temp file + rename) to a tmpfs path (`/run/lienwatch/status.json` by
default), so rewriting it every few seconds costs no flash writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lienwatch.errors import LienwatchError


class StatusUnavailableError(LienwatchError):
    """No (fresh) status file: the agent is not running or writes elsewhere (exit code 1)."""

    exit_code = 1


class StatusFileError(LienwatchError):
    """The file is not an agent status file (not JSON, binary, empty, the wrong shape): exit 2."""


MAX_STATUS_BYTES = 4 * 1024 * 1024  # the agent writes a few kB; anything bigger is not ours
_NUMBER = (int, float)
# What `render` and `edge status` read, by type; a nested dict describes a JSON object, and
# `"*"` every member of one. Absent keys are fine (older agents), present ones must match.
_OPTIONAL_NUMBER = (int, float, type(None))
_SHAPE: dict[str, Any] = {
    "written_ns": int, "uptime_s": _NUMBER, "stopped": bool,
    "uplink": {"state": str, "last_error": (str, type(None)), "budget": {"telemetry_open": bool}},
    "queue": {"depth_by_priority": dict},
    "clock": {"quality": str, "gnss_offset_ms": _NUMBER},
    "sources": {"*": {"state": str, "detail": str}},
    "inbox": {}, "downlink": {"refused": dict},
    "detectors": {"*": {"open_events": [{}]}},  # [spec]: a JSON array, each item matching spec
    "power": {"state": str, "wire_state": str, "soc_pct": _NUMBER, "replans": int,
              "forecast_days": (int, float, type(None)), "avg_current_ma": (int, float, type(None)),
              "ledger": {"spent_mah": _NUMBER},
              "backup": {"cell_soc_pct": _OPTIONAL_NUMBER, "position_interval_s": _OPTIONAL_NUMBER,
                         "cell_ma": _NUMBER, "lasts_h": _OPTIONAL_NUMBER},
              "sleep": {"sleeps": int, "slept_s": _NUMBER, "early_wakes": int, "failures": int,
                        "refused": dict, "last_refusal": str}},
    "actuators": {"starter_interrupt": {"state": str, "waiting_for": str, "parked_s": _NUMBER,
                                        "override_until_ns": int}},
}


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, separators=(",", ":"), default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any]:
    """The status dict in `path`; StatusUnavailableError if there is none, StatusFileError if the
    file is not one the agent wrote (so `render` never meets a value of the wrong type)."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_STATUS_BYTES + 1)
    except FileNotFoundError:
        raise StatusUnavailableError(f"no status file at {path}: is the agent running?") from None
    except OSError as error:
        raise StatusFileError(f"cannot read the status file {path}: {error.strerror}") from None
    if len(raw) > MAX_STATUS_BYTES:
        raise StatusFileError(f"{path} is not an agent status file (over {MAX_STATUS_BYTES} bytes)")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        detail = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise StatusFileError(f"{path} is not an agent status file (not JSON: {detail})") from None
    problem = _shape_problem(data, _SHAPE, "")
    if problem:
        raise StatusFileError(f"{path} is not an agent status file ({problem})")
    return data  # type: ignore[no-any-return]


def _shape_problem(value: object, shape: dict[str, Any], where: str) -> str | None:
    """What in `value` does not match `shape` (None if it all does)."""
    if not isinstance(value, dict):
        return f"{where or 'the document'} must be a JSON object"
    for name, expected in shape.items():
        members = value.items() if name == "*" else [(name, value[name])] if name in value else []
        for key, member in members:
            at = f"{where}.{key}" if where else str(key)
            if isinstance(expected, list):
                if not isinstance(member, list):
                    return f"{at} must be a JSON array"
                problem = next((p for i, item in enumerate(member)
                                if (p := _shape_problem(item, expected[0], f"{at}[{i}]"))), None)
                if problem:
                    return problem
            elif isinstance(expected, dict):
                problem = _shape_problem(member, expected, at)
                if problem:
                    return problem
            elif not isinstance(member, expected) or (expected is not bool and isinstance(member, bool)):
                return f"{at} has the wrong type ({type(member).__name__})"
    return None


def _mib(n: object) -> str:
    return f"{int(n) / 1048576:.2f} MiB" if isinstance(n, int) else "?"


def render(status: dict[str, Any], now_ns: int) -> str:
    """A human-readable summary of a status dict."""
    age_s = (now_ns - int(status.get("written_ns", 0))) / 1e9
    link = status.get("uplink", {})
    queue = status.get("queue", {})
    budget = link.get("budget", {})
    lines = [
        f"agent      {status.get('device_id', '?')}  pid {status.get('pid', '?')}  "
        f"up {status.get('uptime_s', 0):.0f} s  (status {age_s:.1f} s old)",
        f"link       {link.get('state', '?')}  published {link.get('published', 0)}  "
        f"acked {link.get('acknowledged', 0)}  in flight {link.get('in_flight', 0)}  "
        f"refusals {link.get('refusals', 0)}" + (f"  last error: {link['last_error']}"
                                                 if link.get("last_error") else ""),
        f"queue      depth {queue.get('depth', 0)} {queue.get('depth_by_priority', {})}  "
        f"on flash {_mib(queue.get('disk_bytes'))} of {_mib(queue.get('max_bytes'))}  "
        f"evicted {queue.get('evicted', 0)}  torn tails {queue.get('torn_tails', 0)}",
        f"flash      written today {_mib(queue.get('bytes_written_today'))}  "
        f"syncs {queue.get('syncs', 0)}",
        f"budget     today {_mib(budget.get('spent_today_bytes'))} of "
        f"{_mib(budget.get('daily_cap_bytes'))}  forecast {_mib(budget.get('forecast_today_bytes'))}"
        f"  telemetry {'open' if budget.get('telemetry_open', True) else 'deferred'}",
    ]
    clock = status.get("clock")
    if clock:
        lines.append(f"clock      {clock.get('quality', '?')}  "
                     f"GNSS offset {clock.get('gnss_offset_ms', 0):.1f} ms")
    for name, health in sorted(status.get("sources", {}).items()):
        lines.append(f"source     {name:<10} {health.get('state', '?'):<9} samples {health.get('samples', 0)}"
                     f"  errors {health.get('errors', 0)}  {health.get('detail', '')}".rstrip())
    for name, detector in sorted(status.get("detectors", {}).items()):
        lines.append(_detector_line(name, detector, now_ns))
    inbox = status.get("inbox", {})
    if inbox.get("overflow"):
        lines.append(f"inbox      {inbox['overflow']} samples dropped: the run loop fell behind")
    power = status.get("power")
    if power:
        forecast, avg = power.get("forecast_days"), power.get("avg_current_ma")
        lines.append(f"power      {power.get('state', '?')} ({power.get('wire_state', '?')})  "
                     f"battery {power.get('soc_pct', '?')} %  "
                     f"avg {'?' if avg is None else f'{avg:.3f}'} mA  "
                     f"forecast {'?' if forecast is None else f'{forecast:.0f}'} days parked  "
                     f"spent {power.get('ledger', {}).get('spent_mah', 0):.1f} mAh  "
                     f"re-plans {power.get('replans', 0)}")
        backup = power.get("backup") or {}
        if power.get("state") == "backup" and backup:
            cell, lasts = backup.get("cell_soc_pct"), backup.get("lasts_h")
            lines.append(f"backup     on the tracker's cell ({'?' if cell is None else f'{cell:.0f}'} %): "
                         f"a position every {backup.get('position_interval_s') or 0:g} s at "
                         f"{backup.get('cell_ma', 0):.2f} mA, lasts "
                         f"{'?' if lasts is None else f'{lasts:.0f}'} h")
        sleep = power.get("sleep")
        if sleep:
            refused = sum(sleep.get("refused", {}).values())
            hours = sleep.get("slept_s", 0) / 3600
            lines.append(f"sleep      {sleep.get('sleeps', 0)} sleeps ({hours:.1f} h)  "
                         f"early wakes {sleep.get('early_wakes', 0)}  failures {sleep.get('failures', 0)}  "
                         f"refused {refused}" + (f"  last: {sleep['last_refusal']}"
                                                 if sleep.get("last_refusal") else ""))
    interrupt = status.get("actuators", {}).get("starter_interrupt")
    if interrupt:
        why = f"  waiting for: {interrupt['waiting_for']}" if interrupt["state"] == "ARMED" else ""
        until = interrupt["override_until_ns"]
        override = f"  override for {(until - now_ns) / 3.6e12:.1f} h more" if until > now_ns else ""
        relay = "on" if interrupt.get("output_active") else "off"
        lines.append(f"starter    {interrupt['state']}  relay {relay}{why}{override}")
    commands = status.get("downlink", {})
    if commands:
        lines.append(f"downlink   executed {commands.get('executed', 0)}  "
                     f"refused {commands.get('refused', {})}")
    return "\n".join(lines)


def _detector_line(name: str, detector: dict[str, Any], now_ns: int) -> str:
    """One detector: armed or not, open events (severity, condition), how long since it fired."""
    armed = detector.get("armed")
    opened = detector.get("open_events") or []
    fired = detector.get("last_fired_ns")
    ago = "never" if not isinstance(fired, int) else f"{(now_ns - fired) / 1e9:.0f} s ago"
    events = ", ".join(f"{e.get('severity', '?')} {e.get('condition') or name} #{e.get('event_id')}"
                       for e in opened) or "none"
    extra = f"  errors {detector['errors']}" if detector.get("errors") else ""
    today = detector.get("today")
    if isinstance(today, dict):  # a detector's daily counters (driving: harsh braking, idling, ...)
        counts = ", ".join(f"{k} {v:g}" for k, v in today.items() if isinstance(v, (int, float)) and v)
        extra += f"  today: {counts or 'nothing counted'}"
    if "in_session" in detector:  # the companion MCU's link (edge/power/mcuwatch.py)
        extra += (f"  link {'up' if detector['in_session'] else 'down'}, {detector.get('events', 0)} events, "
                  f"{detector.get('link_errors', 0)} errors, "
                  f"{detector.get('garbage_bytes', 0)} garbage bytes")
    state = "" if armed is None else ("armed     " if armed else "disarmed  ")
    return f"detector   {name:<10} {state}open: {events}  last fired {ago}{extra}"
