"""The console's pure ES modules (geometry, inbox order, fleet health, forecast, OpenAPI matching)
under Node's own test runner (Node is installed by the Makefile for the MCU tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

HERE = Path(__file__).parent


def test_console_modules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is missing (make installs nodejs)")
        pytest.skip("node is missing (make installs nodejs)")
    result = subprocess.run([node, "--test", *sorted(str(p) for p in (HERE / "js").glob("*.test.js"))],
                            capture_output=True, text=True, timeout=120, cwd=HERE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
