"""`lienwatch demo` (= `make demo`): what the lender sees when a financed car is towed at night.

Plays the showcase scenario (hil/scenarios/night_tow.toml: drive home, park in the street, a hook
truck at 02:00) through the whole chain on embedded defaults — PostgreSQL with the schema,
mosquitto from the shipped config (mutual TLS), the real receiver, the real API and the real agent
on the emulated car's simulation clock — then prints the lender's view from the API: each event
with its severity and detection latency, where it happened, the API's URL and the report folder.
Everything is stopped and removed afterwards; `--serve` keeps the API and its operations console
(`/console/`) up on the demo's data until Ctrl-C, with an admin key to sign in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from lienwatch.cliargs import number

if TYPE_CHECKING:
    from hil.runner import Bench, Played

_HELP = "Show what the lender sees: an emulated car towed at night, end to end (~1 min)."
SHOWCASE = "night_tow"
DEVICE_ID = "demo-car-1"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help=_HELP, description=_HELP)
    demo.add_argument("--scenario", default=SHOWCASE, help=f"scenario to show (default {SHOWCASE})")
    demo.add_argument("--seconds", type=number(1, 86400), default=None,
                      help="the first drive lasts this many simulated seconds (default: the scenario's)")
    demo.add_argument("--output", default="hil-report", help="report folder (default ./hil-report)")
    demo.add_argument("--serve", action="store_true",
                      help="then serve the API and its console on the demo's data until Ctrl-C")
    demo.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, agent state)")
    demo.set_defaults(handler=run)


def lender_view(played: Played, api_url: str | None) -> list[str]:
    """The lender's view of one scenario as printable lines."""
    zone = ZoneInfo(played.scenario.time_zone)
    lines = [f"what the lender sees for {played.device_id} ({played.scenario.name}), "
             f"from the API at {api_url}:"]
    if not played.events:
        lines.append("  no events")
    latency = {o.what.split(" ")[0]: o.latency_s for o in played.outcomes if o.latency_s is not None}
    for event in played.events:
        when = dt.datetime.fromtimestamp(event.raised_ns / 1e9, zone).strftime("%a %d %b %H:%M:%S")
        placed = event.lat is not None and event.lon is not None
        where = f" at {event.lat:.5f}, {event.lon:.5f}" if placed else ""
        seen = latency.get(event.detector)
        after = f", detected {seen:.0f} s after it began" if seen is not None else ""
        state = "cleared" if event.cleared else "open"
        lines.append(f"  {when}  {event.severity:<9} {event.detector}/{event.condition or '-'}{where}{after} "
                     f"({state})")
    for outcome in played.outcomes:
        lines.append(f"  {'ok  ' if outcome.ok else 'FAIL'} {outcome.what}: {outcome.detail}")
    return lines


def run(args: argparse.Namespace) -> int:
    from hil.report import print_table
    from hil.runner import resolve, run_scenarios

    output = Path(args.output)

    def show(bench: Bench, results: list[Played]) -> None:
        for played in results:
            print("\n".join(lender_view(played, bench.api_url)))
        print(f"API: {bench.api_url}  (try: curl -H 'Authorization: Bearer {bench.api_key}' "
              f"{bench.api_url}/events)")
        print(f"report: {output.resolve()} "
              "(PNG track with events, timeline, battery; report.json; junit.xml)")
        if args.serve:
            _serve(bench)

    results = run_scenarios(resolve([args.scenario]), output, keep=args.keep, after=show,
                            device_ids=[DEVICE_ID], first_drive_s=args.seconds)
    print_table(results)
    return 0 if all(r.passed for r in results) else 1


def _serve(bench: Bench) -> None:
    """Keep the API (and its console) up on the demo's data until SIGINT/SIGTERM."""
    from hil.runner import _cli

    made = _cli("cloud", "keys", "add", "--dsn", bench.dsn, "--user", "demo", "--role", "admin")
    token = made.split("token (shown only now):", 1)[1].split()[0]
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"console: {bench.api_url}/console/  (API key: {token})", flush=True)
    print(f"API: {bench.api_url}/openapi.json; Ctrl-C stops the API and the demo", flush=True)
    try:
        while not stop.is_set() and bench.api is not None and bench.api.poll() is None:
            stop.wait(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bench.stop_api()
    print("API stopped", flush=True)
