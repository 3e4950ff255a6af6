"""`[api] workers = 2`: the real `lienwatch cloud api` with two uvicorn worker processes, each
serving the connections the supervisor hands it. Connections made at once are spread evenly, a
new one goes to the worker with the fewest open; a key's rate limit
holds whichever answers (buckets in PostgreSQL); /metrics counts every worker's requests; a
worker that dies is replaced, workers that cannot start stop the API with an error; the jobs that
must run once take their advisory lock."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cloud.api.keys import authenticate, create_key, revoke_key
from cloud.api.ratelimit import SharedRateLimiter
from cloud.store.db import WATCHERS_LOCK, connect, exclusive
from hil.services import free_port, wait_for_port
from lienwatch.clock import ManualClock

REQUESTS = 48
BURST = 30


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _workers(pid: int) -> list[int]:
    """The worker processes of the API `pid` (not multiprocessing's resource tracker)."""
    found = []
    for child in _children(pid):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


@pytest.fixture
def two_workers(migrated_db: str, tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    port = free_port()
    config = tmp_path / "api.toml"
    config.write_text(f'[database]\ndsn = "{migrated_db}"\n[api]\nport = {port}\nworkers = 2\n'
                      f"access_log = false\n[api.rate_limit]\nper_minute = 1\nburst = {BURST}\n")
    with connect(migrated_db) as conn:
        _, token = create_key(conn, "two-workers", "risk_officer")
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "lienwatch", "cloud", "api", "--config", str(config)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 60, process)
        deadline = time.monotonic() + 60  # the port opens before both workers have their app
        while time.monotonic() < deadline and \
                len([c for c in _children(process.pid) if _cpu_ticks(c) > 0]) < 2:
            time.sleep(0.2)
        for _ in range(100):
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", token, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    assert not [c for c in _children(process.pid)], "a worker outlived the supervisor"


def test_two_workers_share_the_rate_limit_and_the_metrics(
        two_workers: tuple[str, str, subprocess.Popen[bytes]]) -> None:
    base, token, process = two_workers
    workers = _children(process.pid)
    before = {pid: _cpu_ticks(pid) for pid in workers}

    def one(_: int) -> int:
        # A connection per request, so the kernel hands them to either worker.
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            status = client.get("/me").status_code
            for _ in range(20):  # some CPU in the worker that took this connection
                client.get("/healthz")
            return status

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(one, range(REQUESTS)))
    busy = [pid for pid in workers if _cpu_ticks(pid) > before[pid]]
    assert len(busy) >= 2, f"only {busy} of the workers {workers} answered"
    # One bucket for the key across both processes: exactly `burst` requests pass (per process
    # buckets would have let up to twice as many through).
    assert codes.count(200) == BURST and codes.count(429) == REQUESTS - BURST
    with httpx.Client(base_url=base) as client:
        text = client.get("/metrics").text
    served = sum(float(value) for value in re.findall(
        r'^lienwatch_api_requests_total\{[^}]*route="/me"[^}]*\} (\S+)$', text, re.MULTILINE))
    assert served == REQUESTS
    limited = re.search(r"^lienwatch_api_rate_limited_total (\S+)$", text, re.MULTILINE)
    assert limited is not None and float(limited[1]) == REQUESTS - BURST


def _request(client: socket.socket) -> None:
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.recv(4096).startswith(b"HTTP/1.1 200")


def _worker_of(port: int) -> dict[int, int]:
    """The worker pid serving each client port connected to the API's `port` (from ss)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    pairs = re.findall(r":\d+\s+\S+:(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)", out)
    return {int(peer): int(pid) for peer, pid in pairs}


def _settle(port: int, open_clients: int) -> None:
    """Wait until the API holds only the `open_clients` connections still open to `port`: those
    closed by their clients are closed by the API too (none in close-wait), and then a moment
    more, since a worker counts a close in connection_lost, right after its socket is gone.
    Without this the fixture's last /healthz connection could still count as open when the test
    begins: the dispatcher then rightly gave that worker one fewer (15/17, CI of db8429d)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-tnH", "state", "close-wait", f"( sport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
        if not out.strip() and len(_worker_of(port)) == open_clients:
            break
        time.sleep(0.05)
    time.sleep(0.5)


def _spread(port: int) -> list[int]:
    counts: dict[int, int] = {}
    for pid in _worker_of(port).values():
        counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values())


def test_connections_are_spread_evenly_and_a_dead_worker_is_replaced(
        two_workers: tuple[str, str, subprocess.Popen[bytes]]) -> None:
    base, _, process = two_workers
    port = int(base.rsplit(":", 1)[1])
    _settle(port, 0)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
    try:
        for client in clients:  # one request each, answered: every connection is with a worker by now
            _request(client)
        assert _spread(port) == [16, 16]  # the kernel's SO_REUSEPORT hash split 32 as 22/10 at times
        # Ten of one worker's connections close: the next ten new ones go to it, not half of them.
        served_by = _worker_of(port)
        busy = served_by[clients[0].getsockname()[1]]
        leaving = [c for c in clients if served_by[c.getsockname()[1]] == busy][:10]
        for client in leaving:
            clients.remove(client)
            client.close()
        _settle(port, 22)
        assert _spread(port) == [6, 16]
        arriving = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        clients += arriving
        for client in arriving:
            _request(client)
        served_by = _worker_of(port)
        assert [served_by[c.getsockname()[1]] for c in arriving] == [busy] * 10
        assert _spread(port) == [16, 16]
    finally:
        for client in clients:
            client.close()
    workers = _children(process.pid)
    os.kill(busy, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive = set(_children(process.pid))
        if busy not in alive and len(alive) >= len(workers):
            break
        time.sleep(0.2)
    answered = [httpx.get(f"{base}/healthz", headers={"Connection": "close"}).status_code for _ in range(20)]
    assert answered == [200] * 20 and process.poll() is None


def test_a_taken_port_stops_the_api_with_an_error(migrated_db: str, tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        config = tmp_path / "api.toml"
        config.write_text(f'[database]\ndsn = "{migrated_db}"\n[api]\nport = {port}\n'
                          "workers = 2\n")
        done = subprocess.run([sys.executable, "-m", "lienwatch", "cloud", "api", "--config", str(config)],
                              capture_output=True, text=True, timeout=180)
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Address already in use" in done.stderr


def test_workers_that_die_as_they_start_stop_the_api_with_an_error(migrated_db: str, tmp_path: Path) -> None:
    config = tmp_path / "api.toml"
    config.write_text(f'[database]\ndsn = "{migrated_db}"\n[api]\nport = {free_port()}\nworkers = 2\n')
    process = subprocess.Popen([sys.executable, "-m", "lienwatch", "cloud", "api", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            for pid in set(_workers(process.pid)) - killed:  # each worker, as soon as it is seen
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.05)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 2, stderr[-2000:]
    assert "API workers exit as they start" in stderr
    assert len(killed) >= 3


def test_the_shared_buckets_refill_and_are_forgotten_when_full(migrated_db: str) -> None:
    clock = ManualClock(wall_ns=1_800_000_000 * 10**9)
    limiter = SharedRateLimiter(per_minute=60, burst=2, clock=clock)
    with connect(migrated_db) as conn:
        assert [limiter.take("k", conn) for _ in range(3)] == [0, 0, 1]
        assert limiter.take("other", conn) == 0
        clock.advance(0.5)
        assert limiter.take("k", conn) == 1
        clock.advance(0.5)
        assert limiter.take("k", conn) == 0
        clock.set_wall_ns(clock.wall_ns() - 30 * 10**9)  # another host's clock behind: no negative refill
        assert limiter.take("k", conn) == 1
        clock.advance(60.0)
        assert limiter.forget_idle(conn) == 2
        assert conn.execute("SELECT count(*) FROM api_rate_buckets").fetchone() == (0,)
        with pytest.raises(ValueError, match="connection"):
            limiter.take("k")


def test_the_key_and_its_token_in_one_statement(migrated_db: str) -> None:
    """SharedRateLimiter.authenticate_and_take: a live key spends a token of its own bucket; a
    wrong secret, a revoked or unknown key or a malformed token is refused and spends nothing."""
    clock = ManualClock(wall_ns=1_800_000_000 * 10**9)
    limiter = SharedRateLimiter(per_minute=60, burst=2, clock=clock)
    with connect(migrated_db) as conn:
        key, token = create_key(conn, "ops", "risk_officer")
        wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert limiter.authenticate_and_take(conn, wrong) == (None, 0)
        assert limiter.authenticate_and_take(conn, "lw_nonsense") == (None, 0)
        assert limiter.authenticate_and_take(conn, f"lw_{'z' * 12}_{'A' * 43}") == (None, 0)
        assert conn.execute("SELECT count(*) FROM api_rate_buckets").fetchone() == (0,)  # none spent
        answers = [limiter.authenticate_and_take(conn, token) for _ in range(3)]
        assert [a[0].key_id if a[0] else None for a in answers] == [key.key_id] * 3
        assert [a[1] for a in answers] == [0, 0, 1]  # burst 2, then a second to wait
        assert authenticate(conn, token) == answers[0][0]  # the same key as the two-step path
        revoke_key(conn, key.key_id)
        assert limiter.authenticate_and_take(conn, token) == (None, 0)
        assert conn.execute("SELECT tokens < 1 FROM api_rate_buckets WHERE bucket = %s",
                            (key.key_id,)).fetchone() == (True,)


def test_only_one_session_holds_a_job_lock(migrated_db: str) -> None:
    with connect(migrated_db) as one, connect(migrated_db) as two:
        with exclusive(one, WATCHERS_LOCK) as first, exclusive(two, WATCHERS_LOCK) as second:
            assert first and not second
        with exclusive(two, WATCHERS_LOCK) as again:
            assert again


def test_workers_stop_when_the_supervisor_is_killed(
        two_workers: tuple[str, str, subprocess.Popen[bytes]]) -> None:
    _, _, process = two_workers
    workers = [pid for pid in _children(process.pid) if "lienwatch-api" in _cmdline(pid)
               or "multiprocessing" in _cmdline(pid)]
    assert workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and _cpu_ticks(pid) >= 0
                                              and _state(pid) != "Z" for pid in workers):
        time.sleep(0.2)
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"] == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
