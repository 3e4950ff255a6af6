"""A short, bounded run of the atheris fuzz target (the long runs happen outside CI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from protocol import golden

TARGET = Path(__file__).with_name("fuzz_decode.py")


def test_fuzz_target_survives_a_bounded_run(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for vector in golden.VECTOR_DIR.glob("*.cbor"):
        shutil.copy(vector, corpus)
    result = subprocess.run(
        [sys.executable, str(TARGET), str(corpus), "-runs=30000", "-max_len=4096", "-seed=1",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, timeout=240, check=False, cwd=Path(__file__).parents[2],
    )
    output = result.stderr.decode(errors="replace")
    assert result.returncode == 0, output[-3000:]
    assert "Done 30000 runs" in output, output[-3000:]
