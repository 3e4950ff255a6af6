"""`lienwatch edge power plan`: the plan, its forecast and why; bad input exits 2 in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lienwatch.cli import main

Capsys = pytest.CaptureFixture[str]


def test_plan_prints_every_state_forecast_and_why(capsys: Capsys) -> None:
    assert main(["edge", "power", "plan", "--profile", "tbox-reference", "--days", "90"]) == 0
    out = capsys.readouterr().out
    for word in ("driving", "parked_watch", "parked_sleep", "critical", "parked forecast", "why parked_sleep",
                 "soc suspend instead of off"):
        assert word in out


def test_plan_as_json_agrees_with_the_horizon(capsys: Capsys) -> None:
    assert main(["edge", "power", "plan", "--days", "30", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["plans"]) == {"driving", "parked_watch", "parked_sleep", "critical", "backup"}
    assert data["plans"]["backup"]["endurance_h"] >= 48.0
    assert data["plans"]["parked_sleep"]["avg_current_ma"] <= data["budget_ma"]
    assert data["forecast_days"] > 30


def test_a_profile_file_and_a_policy_file(tmp_path: Path, capsys: Capsys) -> None:
    from importlib import resources

    profile = tmp_path / "board.toml"
    profile.write_text(resources.files("edge.power").joinpath("profiles", "tbox-reference.toml")
                       .read_text(encoding="utf-8"))
    policy = tmp_path / "policy.toml"
    policy.write_text("[power]\nposition_interval_min_h = 3.0\n")
    assert main(["edge", "power", "plan", "--profile", str(profile), "--policy", str(policy), "--json"]) == 0
    sleep = json.loads(capsys.readouterr().out)["plans"]["parked_sleep"]
    assert sleep["wake_interval_s"] >= 3 * 3600


@pytest.mark.parametrize("args, message", [
    (["--days", "0"], "--days must be > 0"),
    (["--days", "nan"], "--days must be > 0"),
    (["--days", "1e9"], "--days must be > 0"),
    (["--profile", "nope"], "unknown power profile"),
    (["--profile", "/nonexistent/board.toml"], "cannot read power profile"),
    (["--soc-pct", "150"], "battery.soc_pct must be in"),
    (["--capacity-ah", "-60"], "battery.capacity_ah must be in"),
    (["--vehicle-quiescent-ma", "-1"], "vehicle_quiescent_ma must be a finite number"),
    (["--policy", "/nonexistent/policy.toml"], "cannot read the policy file"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, capsys: Capsys) -> None:
    assert main(["edge", "power", "plan", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_garbage_files_exit_2(tmp_path: Path, capsys: Capsys) -> None:
    garbage = tmp_path / "g.toml"
    garbage.write_bytes(b"\x00\xff garbage = = =")
    for flag in ("--profile", "--policy"):
        assert main(["edge", "power", "plan", flag, str(garbage)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lienwatch: ") and err.count("\n") == 1
    policy = tmp_path / "p.toml"
    policy.write_text("power = 3\n")
    assert main(["edge", "power", "plan", "--policy", str(policy)]) == 2
    assert "[power] must be a table" in capsys.readouterr().err


def test_non_numeric_days_is_an_argparse_error(capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["edge", "power", "plan", "--days", "ninety"])
    assert exit_info.value.code == 2
