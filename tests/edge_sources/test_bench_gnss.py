"""bench/gnss.py keeps its output contract: a table, then one JSON line (the figures are its business)."""

from __future__ import annotations

import json

import pytest

from bench import gnss


def test_bench_prints_a_table_then_the_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    gnss.main(megabytes=0.2)
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert set(figures["mb_per_cpu_s"]) == {"pynmeagps", "source", "gnss parse"}
    assert figures["gnss_parse_epochs"] > 0 and any(line.startswith("gnss parse ") for line in lines)
