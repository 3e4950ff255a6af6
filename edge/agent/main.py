"""Handlers of `lienwatch edge run` and `lienwatch edge status` (loaded lazily by edge/cli.py)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from edge.agent import logs
from edge.agent.config import SCHEMA, load_config
from edge.agent.status import StatusUnavailableError, read_status, render
from lienwatch.clock import SystemClock


def run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT; exit 75 when a Reboot command asks for a restart."""
    from edge.agent.preflight import preflight
    from edge.agent.runtime import Agent  # the heavy imports only when really running

    config = load_config(Path(args.config))
    clock = SystemClock()
    warnings = preflight(config, clock)  # every path the config names, before anything starts
    logs.configure(str(config["agent.log_level"]))
    for warning in warnings:
        logging.getLogger("lienwatch.agent").warning(warning)
    agent = Agent(config, clock=clock)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return agent.run(stop)


def status(args: argparse.Namespace) -> int:
    """Print the running agent's status; exit 1 if it is not running or its status is stale."""
    path = Path(args.status_file) if getattr(args, "status_file", None) else _status_path(args.config)
    data = read_status(path)
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render(data, SystemClock().wall_ns()))
    age_s = (SystemClock().wall_ns() - int(data.get("written_ns", 0))) / 1e9
    if data.get("stopped"):
        print("the agent has stopped", file=sys.stderr)
        return 1
    if age_s > 30:
        raise StatusUnavailableError(f"status is {age_s:.0f} s old: the agent is not running or is stuck")
    return 0


def override(args: argparse.Namespace) -> int:
    """Write an emergency code where the agent reads it on its next tick (`state_dir/override_code`)."""
    from edge.actuators.agent import write_code

    config = load_config(Path(args.config))
    path = write_code(Path(str(config["agent.state_dir"])), args.code)
    print(f"code handed to the agent ({path}); `lienwatch edge status` shows the starter interrupt")
    return 0


def _status_path(config_path: str) -> Path:
    path = Path(config_path)
    if path.exists():
        return Path(str(load_config(path)["agent.status_file"]))
    default = next(k.default for k in SCHEMA if k.name == "agent.status_file")
    return Path(str(default))
