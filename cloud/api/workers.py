"""`[api] workers` > 1: several uvicorn worker processes on one port.

One Python process answers on one core at a time (the GIL), so a host with more cores than one
runs a process per core. What the processes share lives outside them: the rate-limit buckets in
PostgreSQL (`SharedRateLimiter`, migration 0012), the Prometheus metrics in files under a run
directory that /metrics sums (prometheus_client's multiprocess mode), and the jobs that must run
once (watchers, command sweeper) behind advisory locks (`cloud.store.db.exclusive`). Each worker
has its own pool (`pool_max_size` each) and its own MQTT client (the client id gets its pid).

The supervisor (the part of uvicorn's it replaces) listens on the port and hands each new
connection to the worker with the fewest open (the socket over a Unix socket pair, SCM_RIGHTS, as
Node's cluster module does), so keep-alive connections, a proxy's or a load generator's, are
spread evenly. Neither alternative is: uvicorn's `workers` shares one listening socket and the
worker that wakes first accepts every connection waiting (16 clients connecting at once were
served 14 by one worker and 2 by the other), and a SO_REUSEPORT socket per worker lets the kernel
hash each connection to a worker (16 connections split 11/5 or worse in a fifth of bench/api.py's
rounds, binomially 21 %: the busier worker's clients wait twice as long as the other's). The supervisor also
starts the workers, starts another when one dies, and on SIGTERM or SIGINT stops listening, then
stops them (uvicorn's graceful shutdown in each); a worker that keeps dying right after it starts
(a wrong database address, say) stops the API with an error instead of a restart loop.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn

from lienwatch.errors import ServiceError

if TYPE_CHECKING:
    from cloud.api.config import ApiConfig

log = logging.getLogger(__name__)

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess directory


class _Counter(Protocol):
    """A number in memory shared with the supervisor (multiprocessing's `Value`)."""

    value: int


def _listening_socket(host: str, port: int) -> socket.socket:
    """The API's listening TCP socket on host:port (`ServiceError` if it cannot be had)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        raise ServiceError(f"the API cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def _stop_with_parent() -> None:
    """SIGTERM this process when the supervisor dies, even by SIGKILL (Linux prctl
    PR_SET_PDEATHSIG): a worker never serves on without it."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


class _HandedServer(uvicorn.Server):
    """uvicorn serving the connections the supervisor hands over `channel` (no socket of its own
    listens); each connection that closes adds one to `closed`, which the supervisor reads."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket, closed: _Counter) -> None:
        super().__init__(config)
        self.channel = channel
        self.closed = closed
        self.connecting: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan, no listener
        if self.should_exit:
            return
        closed = self.closed
        base: type[Any] = self.config.http_protocol_class

        class Counted(base):  # type: ignore[misc, valid-type]
            def connection_lost(self, exc: Exception | None) -> None:
                try:
                    super().connection_lost(exc)
                finally:
                    closed.value += 1

        def protocol() -> asyncio.Protocol:
            made: asyncio.Protocol = Counted(config=self.config, server_state=self.server_state,
                                             app_state=self.lifespan.state)
            return made

        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._take, loop, protocol)

    def _take(self, loop: asyncio.AbstractEventLoop, protocol: Callable[[], asyncio.Protocol]) -> None:
        """Serve every connection waiting in the channel; the supervisor gone, stop."""
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 16, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            if not message:
                for fd in fds:
                    os.close(fd)
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                task = loop.create_task(self._connect(loop, socket.socket(fileno=fd), protocol))
                self.connecting.add(task)
                task.add_done_callback(self.connecting.discard)

    async def _connect(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                     protocol: Callable[[], asyncio.Protocol]) -> None:
        try:
            await loop.connect_accepted_socket(protocol, sock)
        except OSError:  # the client left already: counted as closed, as the supervisor counted it open
            sock.close()
            self.closed.value += 1

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):  # not started, or the channel is closed
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets)


def _worker(config_path: str, metrics_dir: str, channel: socket.socket, closed: _Counter) -> None:
    """One worker process: uvicorn serving the app on the connections handed over `channel`."""
    os.environ[METRICS_ENV] = metrics_dir  # before prometheus_client is imported (with the app)
    _stop_with_parent()
    from cloud.api.app import create_app
    from cloud.api.cli import configure_logging, uvicorn_options
    from cloud.api.config import load_config

    configure_logging()
    config = load_config(config_path)
    _HandedServer(uvicorn.Config(create_app(config), **uvicorn_options(config.api)), channel, closed).run()


@dataclass
class _Slot:
    """A worker and what the supervisor knows of its connections: `opened` (handed to it, counted
    here) less `closed` (counted by the worker) are open."""

    process: multiprocessing.process.BaseProcess
    channel: socket.socket
    closed: _Counter
    started: float
    opened: int = 0

    def open_connections(self) -> int:
        return self.opened - self.closed.value


class _Dispatcher:
    """Accepts connections on the listening socket (a thread of the supervisor) and hands each to
    the live worker with the fewest open; a worker that cannot take it (dead, or its channel full)
    is passed over."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.slots: list[_Slot] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lienwatch-api-dispatch", daemon=True)

    def hand(self, connection: socket.socket) -> bool:
        """Pass `connection` to a worker (the supervisor's copy is then closed by the caller)."""
        with self.lock:
            for slot in sorted(self.slots, key=_Slot.open_connections):
                try:
                    socket.send_fds(slot.channel, [b"c"], [connection.fileno()], socket.MSG_DONTWAIT)
                except OSError:
                    continue
                slot.opened += 1
                return True
        return False

    def _run(self) -> None:
        self.listener.settimeout(0.25)  # to see `stopping`
        while not self.stopping.is_set():
            try:
                connection, peer = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as error:  # out of file descriptors, say: the connection waits in the backlog
                if self.stopping.is_set():
                    return
                log.warning("the API cannot accept a connection: %s", error)
                self.stopping.wait(0.1)
                continue
            with connection:
                if not self.hand(connection):
                    log.warning("no API worker could take the connection from %s: closed", peer)

    def stop(self) -> None:
        """Stop accepting (connections handed over stay with their workers)."""
        self.stopping.set()
        if self.thread.ident is not None:  # started
            self.thread.join()
        self.listener.close()


PR_SET_PDEATHSIG = 1  # linux/prctl.h
QUICK_EXIT_S = 10.0  # a worker that dies sooner after its start counts as failing to start
MAX_QUICK_EXITS = 3  # in a row: then the API stops
STOP_TIMEOUT_S = 30.0  # graceful shutdown of a worker, then SIGKILL


def serve_workers(config_path: str | Path, config: ApiConfig) -> None:
    """Serve the API from `config.workers` processes on [api] host:port until SIGTERM or SIGINT;
    `ServiceError` if the port cannot be had or the workers keep dying as they start."""
    dispatcher = _Dispatcher(_listening_socket(config.host, config.port))
    run_dir = Path(tempfile.mkdtemp(prefix="lienwatch-api-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    path = str(Path(config_path).resolve())
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start() -> _Slot:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        closed = context.Value("q", 0, lock=False)
        process = context.Process(target=_worker, args=(path, str(metrics_dir), theirs, closed),
                                  name="lienwatch-api-worker")
        process.start()
        theirs.close()
        return _Slot(process, ours, closed, time.monotonic())

    with dispatcher.lock:
        dispatcher.slots = [start() for _ in range(config.workers)]
    dispatcher.thread.start()
    log.info("API listening on %s:%s, %d workers", config.host, config.port, config.workers)
    quick_exits = 0
    try:
        while not stop.wait(0.5):
            for i, slot in enumerate(dispatcher.slots):
                if slot.process.is_alive():
                    continue
                quick_exits = quick_exits + 1 if time.monotonic() - slot.started < QUICK_EXIT_S else 0
                if quick_exits >= MAX_QUICK_EXITS:
                    raise ServiceError(f"API workers exit as they start (the last with code "
                                       f"{slot.process.exitcode}): see their log above")
                log.warning("API worker pid %s exited with code %s: starting another", slot.process.pid,
                            slot.process.exitcode)
                replacement = start()
                with dispatcher.lock:
                    dispatcher.slots[i] = replacement
                slot.channel.close()
    finally:
        dispatcher.stop()
        for slot in dispatcher.slots:
            if slot.process.is_alive():
                slot.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for slot in dispatcher.slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            slot.channel.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(run_dir, ignore_errors=True)
