"""Scenario files: every shipped one parses; a file with an error is refused with its line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.runner import SCENARIO_DIR, resolve
from hil.scenario_file import ScenarioError, load_scenario, parse_scenario
from lienwatch.cli import main

GOOD = """name = "t"
start = 2026-01-05T17:40:00+01:00

[[timeline]]
do = "drive"
minutes = 5
mark = "go"

[[timeline]]
do = "tow"
minutes = 1

[[expect.event]]
detector = "tow"
severity = "EMERGENCY"
after = "go"
within_s = 60
"""

SHIPPED = sorted(SCENARIO_DIR.glob("*.toml"))
REQUIRED = {"commute_week", "night_tow", "unplug_then_tow", "gnss_jamming", "underground_garage",
            "odometer_rollback", "used_car_market", "leaving_region", "night_doors", "battery_degradation",
            "broker_outage", "agent_killed", "park_90_days", "starter_interrupt_mid_drive"}


def test_every_required_scenario_ships_and_parses() -> None:
    assert {p.stem for p in SHIPPED} >= REQUIRED
    for path in SHIPPED:
        scenario = load_scenario(path)
        assert scenario.steps and scenario.name
        for expected in scenario.events:  # every latency is measured from a mark the timeline has
            assert expected.after is None or expected.after in scenario.marks


def test_a_good_file_parses_into_steps_and_expectations() -> None:
    scenario = parse_scenario(GOOD, Path("t.toml"))
    assert [s.action for s in scenario.steps] == ["drive", "tow"]
    assert scenario.steps[0].seconds == 300 and scenario.steps[0].mark == "go"
    (event,) = scenario.events
    assert (event.detector, event.severity, event.within_s, event.line) == ("tow", "EMERGENCY", 60.0, 13)
    assert not scenario.other_alarms and scenario.exactly_once


@pytest.mark.parametrize(("edit", "line", "reason"), [
    (("minutes = 5\nmark", "minutes = five\nmark"), 6, "not valid TOML"),
    (('do = "tow"', 'do = "fly"'), 9, "'fly' is not an action"),
    (("minutes = 1\n", "minutes = 1\nspeed = 3\n"), 9, "tow has no option 'speed'"),
    (("minutes = 1\n", "minutes = -1\n"), 9, "must be >= 0"),
    (("minutes = 1\n", "minutes = 1\nseconds = 3\n"), 9, "not several"),
    (("minutes = 1\n", 'until = "25:00"\n'), 9, "local time"),
    (('after = "go"', 'after = "gone"'), 13, "names no timeline mark"),
    (('severity = "EMERGENCY"', 'severity = "PANIC"'), 13, "severity must be one of"),
    (('detector = "tow"', 'detector = "towing"'), 13, "is not a detector"),
    (("within_s = 60", "within_s = true"), 13, "within_s must be a number"),
    (('name = "t"', 'name = "t"\ncolour = "red"'), 2, "unknown key 'colour'"),
    (("start = 2026-01-05T17:40:00+01:00", 'start = "yesterday"'), 2, "not an ISO 8601"),
    (("minutes = 1\n", "minutes = 1\ntick_s = 9999\n"), 9, "tick_s must be within"),
    (('do = "tow"\nminutes = 1', 'do = "spoof"\nminutes = 1'), 9, "spoof needs jump_km"),
])
def test_a_broken_file_is_refused_with_line_and_reason(edit: tuple[str, str], line: int, reason: str) -> None:
    text = GOOD.replace(*edit, 1)
    assert text != GOOD
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(text, Path("bad.toml"))
    assert f"bad.toml:{line}:" in str(refused.value), str(refused.value)
    assert reason in str(refused.value)


def test_garbage_bytes_and_empty_files_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(binary)
    with pytest.raises(ScenarioError, match="name must be"):
        parse_scenario("", Path("empty.toml"))
    with pytest.raises(ScenarioError, match="timeline is missing"):
        parse_scenario('name = "x"\nstart = 2026-01-01T00:00:00Z\n', Path("x.toml"))


def test_hil_check_names_the_file_and_line_and_exits_2(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('do = "tow"', 'do = "fly"'))
    assert main(["hil", "check", str(bad)]) == 2
    assert f"{bad}:9: timeline[2]" in capsys.readouterr().err
    assert main(["hil", "check", "night_tow"]) == 0
    with pytest.raises(ScenarioError, match="no scenario 'nope'"):
        resolve(["nope"])


COMMAND = """name = "c"
start = 2026-01-12T08:10:00+01:00

[[timeline]]
do = "drive"
minutes = 5

[[timeline]]
do = "command"
mark = "arm"
command = "arm_starter_interrupt"
reason = "contract 7: default notice served"

[[timeline]]
do = "park"
mark = "parked"
minutes = 3

[expect.starter_interrupt]
state = "ENGAGED"
armed_after = "arm"
engaged_after = "parked"
within_s = 60
"""


def test_a_command_step_and_the_interrupt_expectation_parse() -> None:
    scenario = parse_scenario(COMMAND, Path("c.toml"))
    step = scenario.steps[1]
    options = {"command": "arm_starter_interrupt", "reason": "contract 7: default notice served"}
    assert (step.action, step.options, step.seconds, step.line) == ("command", options, 0.0, 8)
    assert scenario.commands and not parse_scenario(GOOD, Path("t.toml")).commands
    expected = scenario.interrupt
    assert expected is not None
    assert (expected.state, expected.armed_after, expected.engaged_after) == ("ENGAGED", "arm", "parked")
    assert (expected.within_s, expected.line) == (60.0, 19)


@pytest.mark.parametrize(("edit", "line", "reason"), [
    (('command = "arm_starter_interrupt"', 'command = "stop"'), 8, "'stop' is not a command"),
    (('command = "arm_starter_interrupt"\n', ""), 8, "command needs command"),
    (('reason = "contract 7: default notice served"', 'reason = "  "'), 8, "reason must be a text"),
    (('reason = "contract 7: default notice served"', "reason = 7"), 8, "reason must be a string"),
    (('reason = "contract 7: default notice served"\n', 'reason = "x"\nspeed_kmh = 3\n'), 8,
     "command has no option 'speed_kmh'"),
    (('state = "ENGAGED"', 'state = "ON"'), 19, "state must be one of"),
    (('engaged_after = "parked"', 'engaged_after = "stopped"'), 19, "names no timeline mark"),
    (("within_s = 60", "within_s = 0"), 19, "within_s must be a number > 0"),
    (('engaged_after = "parked"\n', ""), 19, "within_s needs engaged_after"),
    (("within_s = 60", "within_s = 60\ncolour = 1"), 19, "unknown key 'colour'"),
])
def test_a_broken_command_step_or_interrupt_expectation_is_refused(edit: tuple[str, str], line: int,
                                                                   reason: str) -> None:
    text = COMMAND.replace(*edit, 1)
    assert text != COMMAND
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(text, Path("bad.toml"))
    assert f"bad.toml:{line}:" in str(refused.value), str(refused.value)
    assert reason in str(refused.value)
