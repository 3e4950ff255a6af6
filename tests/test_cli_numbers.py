"""Numeric command-line options refuse nan, inf, negatives and zero where meaningless (exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import pytest

from hil import ecu, gnss
from lienwatch.cli import build_parser, main

BAD_NUMBERS = ("nan", "inf", "-inf", "-1", "1e999", "abc", "")


def _numeric_options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
                     ) -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _numeric_options(sub, (*path, name))
        elif action.type is not None:
            yield path, action


def test_no_lienwatch_option_takes_a_bare_int_or_float() -> None:
    """Every numeric option of the edge/hil/protocol/demo commands goes through lienwatch.cliargs.
    Not checked: `cloud` (its own handlers) and `edge power plan`, whose handler checks every number
    against the power model's ranges (tests/edge_power/test_cli.py feeds it nan and negatives)."""
    options = [(p, a) for p, a in _numeric_options(build_parser())
               if p[0] != "cloud" and p[:2] != ("edge", "power")]
    assert options, "expected numeric options (edge probe --timeout, demo --seconds)"
    bare = [(" ".join(p), a.dest) for p, a in options if a.type in (int, float)]
    assert bare == []


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("option", ["--timeout", "--bitrate", "--port"])
def test_edge_probe_refuses_bad_numbers(option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["edge", "probe", "--interface", "udp_multicast", "--channel", "ff11::1:2:3", f"{option}={value}"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "61", "nan"])
def test_edge_probe_timeout_must_be_positive_and_bounded(value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["edge", "probe", "--channel", "can0", "--timeout", value])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "0"])
def test_demo_seconds_refuses_bad_numbers(value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", f"--seconds={value}"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(("entry", "argv"), [
    (ecu.main, ["--port", "0"]), (ecu.main, ["--port", "70000"]), (ecu.main, ["--seconds", "nan"]),
    (ecu.main, ["--seconds", "-1"]), (gnss.main, ["--seconds", "-5"]), (gnss.main, ["--seconds", "1e3"]),
])
def test_hil_tools_refuse_bad_numbers(entry: Callable[[list[str]], int], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    assert exit_info.value.code == 2


def test_edge_probe_port_is_for_udp_multicast_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge", "probe", "--interface", "virtual", "--channel", "x", "--port", "43113"]) == 2
    assert "ConfigError: --port applies to --interface udp_multicast only" in capsys.readouterr().err

