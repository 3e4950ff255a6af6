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
    """No (readable, fresh) status file: the agent is not running or writes elsewhere."""

    exit_code = 1


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, separators=(",", ":"), default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StatusUnavailableError(f"no status file at {path}: is the agent running?") from None
    except (OSError, ValueError) as error:
        raise StatusUnavailableError(f"cannot read the status file {path}: {error}") from None
    if not isinstance(data, dict):
        raise StatusUnavailableError(f"{path} is not an agent status file")
    return data


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
    inbox = status.get("inbox", {})
    if inbox.get("overflow"):
        lines.append(f"inbox      {inbox['overflow']} samples dropped: the run loop fell behind")
    commands = status.get("downlink", {})
    if commands:
        lines.append(f"downlink   executed {commands.get('executed', 0)}  "
                     f"refused {commands.get('refused', {})}")
    return "\n".join(lines)
