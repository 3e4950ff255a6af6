"""bench/detection.py keeps working: a short run prints its tables and, last, its JSON line."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

from bench import detection


def test_the_detection_benchmark_runs_and_ends_with_its_json_line() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert detection.main(["--days", "1", "--only", "unplug"]) == 0
    lines = out.getvalue().strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["scenarios"] == 2 and figures["detected_correctly"] == 2
    assert figures["false_alerts"] == 0 and figures["days"] == 1
    assert any("unplug: parked" in line for line in lines)


def test_every_shipped_detector_runs_in_the_benchmark() -> None:
    from edge.detect.registry import BUILTIN

    kinds = {k["kind"] for k in detection.all_detectors()}
    assert kinds == set(BUILTIN)
    assert {s.detector for s in detection.SCENARIOS} >= {"tow", "unplug", "gnss_jamming", "tamper"}


def test_every_labelled_scenario_is_detected_with_its_severity_and_nothing_else_alarms() -> None:
    """The scenarios are the detectors' acceptance test: one that stops firing is a regression
    (a rollback scenario once drove the odometer negative, which the detector rightly skips)."""
    results = [detection.run_scenario(item) for item in detection.SCENARIOS]
    wrong = [(r.scenario.name, r.severity, r.false_alarms) for r in results if not r.correct]
    assert len(results) >= 26 and wrong == []
