"""The supervisor's selftest under real MicroPython: the official WebAssembly port in Node.js.

`make install` puts the npm package `@micropython/micropython-webassembly-pyscript` into
.venv/mcu/ (see the Makefile). With CI=true a missing Node.js or package fails; elsewhere the
test is skipped and says what to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / ".venv/mcu/node_modules/@micropython/micropython-webassembly-pyscript"
RUNNER = Path(__file__).with_name("run_micropython.mjs")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _micropython(snippet: str | None = None) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (PACKAGE / "micropython.mjs").exists():
        message = "Node.js or the MicroPython WebAssembly package is missing: run `make install`"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    args = [node, str(RUNNER), str(REPO), str(PACKAGE), *([snippet] if snippet else [])]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_selftest_passes_under_micropython() -> None:
    from edge.mcu import selftest

    result = _micropython()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"mcu selftest: {len(selftest.CHECKS)} passed" in result.stdout


def test_it_really_is_micropython_and_a_failure_shows() -> None:
    result = _micropython("import sys\nprint(sys.implementation.name)\nassert False, 'expected'")
    assert result.returncode == 1
    assert "micropython" in result.stdout and "AssertionError: expected" in result.stdout


def test_cpython_only_code_fails_there() -> None:
    result = _micropython("import dataclasses")
    assert result.returncode == 1 and "ImportError" in result.stdout
