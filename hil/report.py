"""The HIL run's report: a pass/fail table on stdout, and in the output folder one PNG per scenario
(the track with its events, the event timeline, 12 V supply / backup cell / battery SoC),
`report.json` (every figure) and `junit.xml` (one test case per scenario, for CI systems)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hil.runner import Played

_COLOURS = {"WARNING": "#e0a000", "ALERT": "#e05000", "EMERGENCY": "#c00000"}


def latencies(played: Played) -> str:
    parts = [f"{o.what.split(' after ')[0]} {o.latency_s:.0f} s"
             for o in played.outcomes if o.latency_s is not None]
    return ", ".join(parts) or "-"


def print_table(results: Sequence[Played]) -> None:
    rows = [("scenario", "result", "detection latency (simulated)", "sim h", "wall s", "notes")]
    for r in results:
        failed = [f"{o.what}: {o.detail}" for o in r.outcomes if not o.ok]
        notes = r.error[:80] if r.error else "; ".join(failed)[:120] or (
            f"{len(r.events)} events" + (f", {r.restarts} agent restart(s)" if r.restarts else ""))
        rows.append((r.scenario.path.stem, "PASS" if r.passed else "FAIL", latencies(r),
                     f"{r.sim_s / 3600:.1f}", f"{r.wall_s:.1f}", notes))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
    passed = sum(r.passed for r in results)
    print(f"{passed}/{len(results)} scenarios passed")


def as_dict(played: Played) -> dict[str, Any]:
    return {
        "scenario": played.scenario.path.stem, "name": played.scenario.name, "device_id": played.device_id,
        "passed": played.passed, "error": played.error, "wall_s": round(played.wall_s, 2),
        "simulated_s": round(played.sim_s, 1), "restarts": played.restarts,
        "outcomes": [{"what": o.what, "ok": o.ok, "detail": o.detail, "latency_s": o.latency_s}
                     for o in played.outcomes],
        "events": [{"event_id": e.event_id, "detector": e.detector, "condition": e.condition,
                    "severity": e.severity, "raised_ns": e.raised_ns, "cleared": e.cleared}
                   for e in played.events],
        "marks": played.marks, "power": played.power, "health": played.health,
    }


def write_report(results: Sequence[Played], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps([as_dict(r) for r in results], indent=2))
    _junit(results, output / "junit.xml")
    for played in results:
        if played.track:
            plot(played, output / f"{played.scenario.path.stem}.png")


def _junit(results: Sequence[Played], path: Path) -> None:
    suite = ET.Element("testsuite", name="lienwatch-hil", tests=str(len(results)),
                       failures=str(sum(1 for r in results if not r.passed and r.error is None)),
                       errors=str(sum(1 for r in results if r.error is not None)),
                       time=f"{sum(r.wall_s for r in results):.2f}")
    for played in results:
        case = ET.SubElement(suite, "testcase", classname="hil.scenarios", name=played.scenario.path.stem,
                             time=f"{played.wall_s:.2f}")
        if played.error is not None:
            ET.SubElement(case, "error", message="the scenario did not run to its end").text = played.error
        elif not played.passed:
            failed = [f"{o.what}: {o.detail}" for o in played.outcomes if not o.ok]
            ET.SubElement(case, "failure", message=failed[0]).text = "\n".join(failed)
        ET.SubElement(case, "system-out").text = "\n".join(
            f"{'ok  ' if o.ok else 'FAIL'} {o.what}: {o.detail}"
            + (f" (latency {o.latency_s:.1f} s)" if o.latency_s is not None else "") for o in played.outcomes)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def plot(played: Played, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    track, start = played.track, played.scenario.start_ns
    hours = [(p["t"] - start) / 3.6e12 for p in track]
    fig, (ax_map, ax_events, ax_power) = plt.subplots(3, 1, figsize=(8, 11), layout="constrained",
                                                      gridspec_kw={"height_ratios": [3, 1, 1.5]})
    ax_map.plot([p["lon"] for p in track], [p["lat"] for p in track], "-", color="#3060a0", lw=1.2)
    ax_map.plot(track[0]["lon"], track[0]["lat"], "o", color="green", label="start")
    for event in played.events:
        if event.lat is not None and event.lon is not None:
            ax_map.plot(event.lon, event.lat, "X", ms=10, color=_COLOURS[event.severity],
                        label=f"{event.detector} {event.severity}")
    ax_map.set_title(f"{played.scenario.name}: track and events")
    ax_map.set_xlabel("longitude")
    ax_map.set_ylabel("latitude")
    ax_map.legend(fontsize=7, loc="best")
    names = sorted({e.detector for e in played.events})
    for event in played.events:
        y = names.index(event.detector)
        for severity, t in event.first_at_ns.items():
            ax_events.plot((t - start) / 3.6e12, y, "o", color=_COLOURS[severity])
    for name, t in played.marks.items():
        ax_events.axvline((t - start) / 3.6e12, color="grey", lw=0.8, ls=":")
        ax_events.text((t - start) / 3.6e12, 0.98, f" {name}", fontsize=7, va="top",
                       transform=ax_events.get_xaxis_transform())
    ax_events.set_yticks(range(len(names)), names)
    ax_events.set_title("event timeline (marks dotted)")
    ax_events.set_xlim(0, max(hours[-1], 1e-3))
    ax_power.plot(hours, [p["supply_v"] for p in track], color="#404040", lw=0.8, label="12 V supply (V)")
    ax_power.set_ylabel("V")
    ax_power.set_xlabel("simulated hours")
    ax_soc = ax_power.twinx()
    ax_soc.plot(hours, [p["soc_pct"] for p in track], color="#20a040", label="battery SoC (agent, %)")
    ax_soc.set_ylabel("SoC %")
    ax_power.set_title("supply voltage and the agent's battery state of charge")
    fig.savefig(path, dpi=80)
    plt.close(fig)
