"""The service harness (hil/services.py) from a checkout inside a private (0700) directory.

As root (as these tests run here) PostgreSQL must run as its own user from binaries that user can
reach, mosquitto drops to its user, neither keeps root's groups, and no directory the harness did
not create changes mode: the checkout's parents stay exactly as they were.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.services import REPO_ROOT, postgres_bin_dir

_SKIP = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                               ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")

_PROBE = """
import json, os
from hil import services
from hil.services import start_mosquitto, start_postgres

def ids(pid):
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
    return {key: status[key].split() for key in ("Uid", "Gid", "Groups")}

with start_postgres() as pg, start_mosquitto() as broker:
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    print(json.dumps({"repo": str(services.REPO_ROOT), "bin_dir": str(pg.bin_dir),
                      "postgres": ids(postmaster), "mosquitto": ids(broker.process.pid)}))
"""


def _modes(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    return {p: (s.st_mode, s.st_uid, s.st_gid) for p in paths if (s := p.stat())}


def _watched(private: Path) -> list[Path]:
    """Every directory whose mode must not change: the private dir, all of its parents, all
    directories of the checkout inside it, /root, and the system temp directory."""
    inside = [Path(d) for d, _, _ in os.walk(private)]
    return [*private.parents, *inside, Path(tempfile.gettempdir()), Path("/root")]


@pytest.fixture
def private_checkout() -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of this checkout, with the PostgreSQL installation the harness uses, in a 0700
    directory (like a clone in /root or in `mktemp -d`), and the environment to run it."""
    private = Path(tempfile.mkdtemp(prefix="lienwatch-private-"))
    cache = Path(tempfile.mkdtemp(prefix="lienwatch-cache-"))
    cache.chmod(0o755)  # the test's own directory; the harness creates its cache below it
    try:
        assert private.stat().st_mode & 0o777 == 0o700
        checkout = private / "lienwatch"
        shutil.copytree(REPO_ROOT, checkout, ignore=_SKIP)
        # The server binaries inside the private directory, like a venv in the checkout.
        bin_dir = postgres_bin_dir()
        top = bin_dir.parents[2]
        libs = bin_dir.parents[1].with_name(bin_dir.parents[1].name + ".libs")
        for part in (bin_dir.parent, libs) if libs.is_dir() else (bin_dir.parent,):
            shutil.copytree(part, checkout / ".venv-site" / part.relative_to(top), symlinks=True)
        env = {**os.environ, "PYTHONPATH": str(checkout), "LIENWATCH_CACHE_DIR": str(cache / "cache"),
               "LIENWATCH_PG_BINDIR": str(checkout / ".venv-site" / bin_dir.relative_to(top))}
        yield checkout, env
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.services
@pytest.mark.slow
def test_harness_and_demo_from_a_private_checkout_change_no_directory_mode(
    private_checkout: tuple[Path, dict[str, str]],
) -> None:
    checkout, env = private_checkout
    before = _modes(_watched(checkout.parent))
    probe = subprocess.run([sys.executable, "-c", _PROBE], cwd=checkout, env=env, capture_output=True,
                           text=True, timeout=180)
    assert probe.returncode == 0, probe.stderr[-3000:]
    import json

    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["repo"] == str(checkout)  # the copy ran, not this worktree
    if os.geteuid() == 0:
        assert Path(seen["bin_dir"]).is_relative_to(env["LIENWATCH_CACHE_DIR"])
        for server in ("postgres", "mosquitto"):
            ids = seen[server]
            assert "0" not in ids["Uid"] and "0" not in ids["Gid"], (server, ids)
            assert "0" not in ids["Groups"], (server, ids)  # none of root's groups
    report = str(checkout / "hil-report")
    demo = subprocess.run([sys.executable, "-m", "lienwatch", "demo", "--output", report],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "what the lender sees" in demo.stdout and "EMERGENCY" in demo.stdout
    after = _modes(_watched(checkout.parent))
    changed = {str(p): (oct(before[p][0]), oct(after[p][0])) for p in before if before[p] != after.get(p)}
    assert not changed, changed


@pytest.mark.services
@pytest.mark.skipif(os.geteuid() != 0, reason="mosquitto drops privileges only when started as root")
def test_a_file_the_broker_cannot_read_is_named_before_it_starts() -> None:
    from hil.services import broker_user, start_mosquitto
    from hil.testpki import make_test_etc
    from lienwatch.errors import ServiceError

    etc = Path(tempfile.mkdtemp(prefix="lienwatch-etc-"))
    etc.chmod(0o755)
    try:
        make_test_etc(etc, ["veh-x"])
        key = etc / "pki/server.key"
        os.chown(key, 0, 0)
        key.chmod(0o600)  # a private key as it should be: nobody else reads it
        conf = REPO_ROOT / "deploy/mosquitto/lienwatch.conf"
        with pytest.raises(ServiceError, match=r"server\.key"):
            start_mosquitto(conf, path_map={"/etc/lienwatch/": f"{etc}/"})
        user = broker_user()
        assert user is not None
        os.chown(key, user.uid, -1)  # given to the broker's user alone, as make-test-pki.sh does
        with start_mosquitto(conf, path_map={"/etc/lienwatch/": f"{etc}/"}) as broker:
            status = Path(f"/proc/{broker.process.pid}/status").read_text()
            uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            assert int(uid) == user.uid
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def test_free_ports_lie_below_the_ephemeral_range_and_are_free() -> None:
    """hil.services.free_port: not a port an outgoing connection may be given meanwhile."""
    import socket

    from hil.services import ephemeral_ports, free_port

    low, high = ephemeral_ports()
    assert 0 < low <= high
    ports = {free_port() for _ in range(50)}
    assert len(ports) > 40  # random, not one port again and again
    if low >= 11_000:  # room below the range (else the kernel's choice is taken)
        assert max(ports) < low
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # free now
