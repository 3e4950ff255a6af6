"""Every shipped scenario end to end: real agent processes, broker, receiver, API; checked through the API.

One bench for all of them (the services start once). A scenario expecting a tow on a plain drive
rides along and must FAIL: the runner can say no.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil.runner import resolve, run_scenarios

WRONG = """name = "a drive that is not a tow"
start = 2026-01-20T08:00:00+01:00
[[timeline]]
do = "drive"
mark = "go"
minutes = 3
[[expect.event]]
detector = "tow"
severity = "EMERGENCY"
after = "go"
within_s = 60
"""


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_every_shipped_scenario_passes_through_the_api(fresh_db: str, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_expectation.toml"
    wrong.write_text(WRONG)
    paths = [*resolve(["all"]), wrong]
    report = tmp_path / "report"
    results = run_scenarios(paths, report, dsn=fresh_db, say=print)
    by_name = {r.scenario.path.stem: r for r in results}
    refused = by_name.pop("wrong_expectation")
    assert not refused.passed and refused.error is None
    assert [o.detail for o in refused.outcomes if not o.ok] == ["not raised"]
    failed = {name: r.error or [f"{o.what}: {o.detail}" for o in r.outcomes if not o.ok]
              for name, r in by_name.items() if not r.passed}
    assert not failed, failed
    for name, played in by_name.items():
        print(name, [(o.what, o.latency_s) for o in played.outcomes if o.latency_s is not None])
        assert played.track and (report / f"{name}.png").stat().st_size > 10_000
        assert any(o.what == "data exactly once" and o.ok for o in played.outcomes)
    assert by_name["agent_killed"].restarts == 1
    assert by_name["park_90_days"].sim_s > 90 * 86400
    suite = ET.parse(report / "junit.xml").getroot()
    assert suite.get("tests") == str(len(paths)) and suite.get("failures") == "1"
    failures = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failures == ["wrong_expectation"]
