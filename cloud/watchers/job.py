"""The periodic job: run every enabled watcher, raise what started, clear what ended."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from cloud.store.db import WATCHERS_LOCK, Conn, exclusive
from cloud.watchers import conditions
from cloud.watchers.config import WatchersConfig
from cloud.watchers.store import EventWriter
from lienwatch.clock import Clock

log = logging.getLogger(__name__)
ConnectionSource = Callable[[], AbstractContextManager[Conn]]


@dataclass
class RunResult:
    raised: dict[str, list[str]] = field(default_factory=dict)  # watcher -> device ids
    cleared: dict[str, list[str]] = field(default_factory=dict)


def run_once(conn: Conn, config: WatchersConfig, now: datetime) -> RunResult:
    """Check every enabled watcher at `now` and write the raises and clears."""
    writer = EventWriter(conn)
    result = RunResult()
    checks: tuple[tuple[str, bool, str, Callable[[], conditions.Verdict], str], ...] = (
        ("offline", config.offline.enabled, config.offline.severity,
         lambda: conditions.offline(conn, now, config.offline), "the device is sending again"),
        ("heartbeat", config.heartbeat.enabled, config.heartbeat.severity,
         lambda: conditions.heartbeat(conn, now, config.heartbeat), "heartbeats arrive again"),
        ("night_parking", config.night_parking.enabled, config.night_parking.severity,
         lambda: conditions.night_parking(conn, now, config.night_parking),
         "the car no longer parks habitually away from home"),
    )
    for watcher, enabled, severity, check, cleared_because in checks:
        if not enabled:
            continue
        verdict = check()
        raised = [d for d, finding in sorted(verdict.holds.items())
                  if writer.raise_event(d, watcher, severity, finding, now)]
        open_now = writer.open_conditions(watcher)
        ended = sorted(set(open_now) - set(verdict.holds) - verdict.unknown)
        cleared = [d for d in ended if writer.clear_event(d, watcher, cleared_because, now)]
        result.raised[watcher], result.cleared[watcher] = raised, cleared
        if raised or cleared:
            log.info("watcher %s: raised %d, cleared %d", watcher, len(raised), len(cleared))
    return result


class WatcherJob:
    """Runs `run_once` every `interval_s` on a daemon thread, on connections from `connect`."""

    def __init__(self, config: WatchersConfig, connect: ConnectionSource, clock: Clock) -> None:
        self.config, self.connect, self.clock = config, connect, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall_ns() / 1e9, UTC)

    def tick(self) -> RunResult | None:
        """One run, unless another process is running the watchers (None then); a database
        error is logged and the next tick tries again."""
        try:
            with self.connect() as conn, exclusive(conn, WATCHERS_LOCK) as held:
                return run_once(conn, self.config, self.now()) if held else None
        except psycopg.Error as error:
            log.warning("watchers failed (%s); will retry in %g s", error, self.config.interval_s)
            return None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lienwatch-watchers", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.config.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


