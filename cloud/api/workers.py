"""`[api] workers` > 1: several uvicorn worker processes on one port.

One Python process answers on one core at a time (the GIL), so a host with more cores than one
runs a process per core. What the processes share lives outside them: the rate-limit buckets in
PostgreSQL (`SharedRateLimiter`, migration 0012), the Prometheus metrics in files under a run
directory that /metrics sums (prometheus_client's multiprocess mode), and the jobs that must run
once (watchers, command sweeper) behind advisory locks (`cloud.store.db.exclusive`). Each worker
has its own pool (`pool_max_size` each) and its own MQTT client (the client id gets its pid).

Each worker listens on its own socket with SO_REUSEPORT, so the kernel spreads new connections
over the workers evenly. uvicorn's own `workers` shares one listening socket instead, and the
worker that wakes first accepts every connection waiting: 16 clients connecting at once were
served 14 by one worker and 2 by the other (bench/api.py), one core idle. This supervisor (the
part of uvicorn's it replaces) starts the workers, starts another when one dies, and on SIGTERM
or SIGINT stops them (uvicorn's graceful shutdown in each); a worker that keeps dying right after
it starts (a wrong database address, say) stops the API with an error instead of a restart loop.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lienwatch.errors import ServiceError

if TYPE_CHECKING:
    from cloud.api.config import ApiConfig

log = logging.getLogger(__name__)

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess directory


def _listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port that other sockets of this user share (SO_REUSEPORT)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _stop_with_parent() -> None:
    """SIGTERM this process when the supervisor dies, even by SIGKILL (Linux prctl
    PR_SET_PDEATHSIG): a worker never serves on without it."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(config_path: str, metrics_dir: str) -> None:
    """One worker process: its own socket on [api] host:port and uvicorn serving the app on it."""
    import uvicorn

    os.environ[METRICS_ENV] = metrics_dir  # before prometheus_client is imported (with the app)
    _stop_with_parent()
    from cloud.api.app import create_app
    from cloud.api.cli import configure_logging, uvicorn_options
    from cloud.api.config import load_config

    configure_logging()
    config = load_config(config_path)
    sock = _listening_socket(config.api.host, config.api.port)
    uvicorn.Server(uvicorn.Config(create_app(config), **uvicorn_options(config.api))).run(sockets=[sock])


PR_SET_PDEATHSIG = 1  # linux/prctl.h
QUICK_EXIT_S = 10.0  # a worker that dies sooner after its start counts as failing to start
MAX_QUICK_EXITS = 3  # in a row: then the API stops
STOP_TIMEOUT_S = 30.0  # graceful shutdown of a worker, then SIGKILL


def serve_workers(config_path: str | Path, config: ApiConfig) -> None:
    """Serve the API from `config.workers` processes on [api] host:port until SIGTERM or SIGINT;
    `ServiceError` if the workers keep dying as they start."""
    run_dir = Path(tempfile.mkdtemp(prefix="lienwatch-api-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    path = str(Path(config_path).resolve())
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start() -> tuple[multiprocessing.process.BaseProcess, float]:
        process = context.Process(target=_worker, args=(path, str(metrics_dir)), name="lienwatch-api-worker")
        process.start()
        return process, time.monotonic()

    workers = [start() for _ in range(config.workers)]
    quick_exits = 0
    try:
        while not stop.wait(0.5):
            for i, (process, started) in enumerate(workers):
                if process.is_alive():
                    continue
                quick_exits = quick_exits + 1 if time.monotonic() - started < QUICK_EXIT_S else 0
                if quick_exits >= MAX_QUICK_EXITS:
                    raise ServiceError(f"API workers exit as they start (the last with code "
                                       f"{process.exitcode}): see their log above")
                log.warning("API worker pid %s exited with code %s: starting another", process.pid,
                            process.exitcode)
                workers[i] = start()
    finally:
        for process, _ in workers:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process, _ in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(run_dir, ignore_errors=True)
