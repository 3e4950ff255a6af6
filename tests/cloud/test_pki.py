"""The test PKI keeps its keys private; `lienwatch cloud pki revoke|crl` revokes, re-signs the CRL
and refuses bad input with one line and exit 2.

The broker's side of revocation is tests/edge_agent/test_broker_security.py."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.testpki import make_test_etc
from lienwatch.cli import main

DEVICES = ("veh-1", "veh-2")


@pytest.fixture
def etc() -> Iterator[Path]:
    root = make_test_etc(Path(tempfile.mkdtemp(prefix="lienwatch-pki-test-")), DEVICES)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(["cloud", "pki", *args])
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _crl_serials(crl: Path) -> list[str]:
    text = subprocess.run(["openssl", "crl", "-noout", "-text", "-in", str(crl)], check=True,
                          capture_output=True, text=True).stdout
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if "Serial Number:" in line]


def test_test_pki_keys_are_readable_only_by_their_users(etc: Path) -> None:
    pki = etc / "pki"
    keys = sorted(pki.rglob("*.key"))
    assert pki / "ca.key" in keys and pki / "services/ca.key" in keys and len(keys) >= 8
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    for private in (pki / "ca-db", pki / "services/ca-db"):
        assert all(not path.stat().st_mode & 0o077 for path in private.rglob("*") if path.is_file())
    for public in (pki / "ca.crt", pki / "ca.crl", pki / "server.crt", pki / "devices/veh-1.crt"):
        assert stat.S_IMODE(public.stat().st_mode) == 0o644, public
    if os.geteuid() == 0:
        # The broker drops to its own user before reading its key: that user owns it, nobody else reads it.
        assert pwd.getpwuid((pki / "server.key").stat().st_uid).pw_name == "mosquitto"
        assert (pki / "ca.key").stat().st_uid == 0


def test_revoke_by_serial_lists_it_on_the_crl_once(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = etc / "pki"
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(pki / "devices/veh-2.crt")],
                            check=True, capture_output=True, text=True).stdout.split("=")[1].strip()
    assert _crl_serials(pki / "ca.crl") == []
    code, out, _ = _run(capsys, "revoke", "--ca-dir", str(pki), f"0x{serial}")
    assert code == 0 and "CN=veh-2" in out and "1 revoked" in out and "SIGHUP" in out
    assert _crl_serials(pki / "ca.crl") == [serial]
    code, out, _ = _run(capsys, "revoke", "--ca-dir", str(pki), str(pki / "devices/veh-2.crt"))
    assert code == 0 and "already revoked" in out and _crl_serials(pki / "ca.crl") == [serial]
    code, out, _ = _run(capsys, "crl", "--ca-dir", str(pki), "--crl-days", "7")
    assert code == 0 and _crl_serials(pki / "ca.crl") == [serial]
    assert stat.S_IMODE((pki / "ca.crl").stat().st_mode) == 0o644


def _mismatched_ca(etc: Path) -> str:
    bad = etc / "mismatched"
    bad.mkdir()
    shutil.copy(etc / "pki/ca.crt", bad / "ca.crt")
    shutil.copy(etc / "pki/foreign/ca.key", bad / "ca.key")
    return str(bad)


def _revoke(e: Path, *more: str) -> list[str]:
    return ["revoke", "--ca-dir", str(e / "pki"), *more]


def _crl(e: Path, *more: str) -> list[str]:
    return ["crl", "--ca-dir", str(e / "pki"), *more]


BAD = {
    "no such directory": lambda e: ["revoke", "--ca-dir", str(e / "nope"), str(e / "pki/devices/veh-1.crt")],
    "not a CA directory": lambda e: ["revoke", "--ca-dir", str(e / "pki/devices"), "1000"],
    "garbage target": lambda e: _revoke(e, "not-a-serial!"),
    "unknown serial": lambda e: _revoke(e, "0xFFFF"),
    "foreign certificate": lambda e: _revoke(e, str(e / "pki/foreign/veh-1.crt")),
    "key, not a certificate": lambda e: _revoke(e, str(e / "pki/devices/veh-1.key")),
    "empty file": lambda e: _revoke(e, str(e / "mosquitto/empty")),
    "key does not match": lambda e: ["crl", "--ca-dir", _mismatched_ca(e)],
    "crl days 0": lambda e: _crl(e, "--crl-days", "0"),
    "crl days nan": lambda e: _crl(e, "--crl-days", "nan"),
    "crl days huge": lambda e: _crl(e, "--crl-days", "99999999999"),
    "bad reason": lambda e: _revoke(e, "--reason", "boredom", "1000"),
    "crl out dir missing": lambda e: _crl(e, "--crl-out", str(e / "no/crl.pem")),
    "pidfile missing": lambda e: _crl(e, "--reload-pidfile", str(e / "none.pid")),
    "pidfile garbage": lambda e: _crl(e, "--reload-pidfile", str(e / "pki/ca.crt")),
    "pid not mosquitto": lambda e: _crl(e, "--reload-pidfile", str(e / "self.pid")),
    "revoke with a stale pidfile": lambda e: _revoke(e, "--reload-pidfile", str(e / "self.pid"), "1001"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(case: str, etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (etc / "mosquitto/empty").write_text("")
    (etc / "self.pid").write_text(f"{os.getpid()}\n")
    before = (etc / "pki/ca-db/index.txt").read_text()
    code, _, err = _run(capsys, *BAD[case](etc))
    assert code == 2, err
    assert "Traceback" not in err and err.strip()
    # One line says what is wrong: ours, or argparse's after its usage text.
    last = err.strip().splitlines()[-1]
    assert last.startswith("lienwatch: PkiError: ") or ": error: argument" in last, err
    assert (etc / "pki/ca-db/index.txt").read_text() == before  # nothing was revoked
