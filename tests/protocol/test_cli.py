"""`lienwatch wire decode|encode`, run as a user would (a subprocess of the installed command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import golden

VECTORS = golden.VECTOR_DIR


def wire(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "lienwatch", "wire", *args], input=stdin,
                          capture_output=True, timeout=60, check=False)


def test_decode_prints_the_json_form():
    result = wire("decode", str(VECTORS / "event.cbor"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (VECTORS / "event.json").read_bytes()


def test_decode_reads_hex_from_stdin():
    hex_text = (VECTORS / "status.cbor").read_bytes().hex().encode() + b"\n"
    result = wire("decode", "--hex", "-", stdin=hex_text)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "status"


def test_encode_writes_the_cbor(tmp_path: Path):
    out = tmp_path / "t.cbor"
    result = wire("encode", str(VECTORS / "telemetry.json"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (VECTORS / "telemetry.cbor").read_bytes()
    stdout = wire("encode", str(VECTORS / "config.json"))
    assert stdout.stdout == (VECTORS / "config.cbor").read_bytes()


@pytest.mark.parametrize("payload", [b"", b"\xff", b"\x84\x02\x01\x80\xa0", b"hello world", b"\x9f" * 50])
def test_bad_payload_exits_2_with_one_line(payload: bytes):
    result = wire("decode", "-", stdin=payload)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Error" in lines[0], result.stderr
    assert result.stdout == b""


def test_bad_hex_and_missing_file_exit_2():
    assert wire("decode", "--hex", "-", stdin=b"zz").returncode == 2
    missing = wire("decode", "/nonexistent/payload.cbor")
    assert missing.returncode == 2 and b"InputError" in missing.stderr


def test_bad_json_exits_2():
    result = wire("encode", "-", stdin=b'{"kind": "event"}')
    assert result.returncode == 2 and b"missing field" in result.stderr


def test_oversized_input_is_refused_without_reading_it_all(tmp_path: Path):
    big = tmp_path / "big.cbor"
    big.write_bytes(b"\x00" * (300 * 1024))
    result = wire("decode", str(big))
    assert result.returncode == 2 and b"PayloadTooLargeError" in result.stderr
