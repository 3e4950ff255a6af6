"""The companion MCU as a detector: its logged events become protocol events (`[power.mcu]`).

`McuWatch` runs `McuPoller` (edge.power.mculink) on its own thread — each request on the UART
waits up to `timeout_s` for the MCU's answer, which must never stall the run loop — and hands
the findings (with the MCU's original times) to the run loop through a bounded queue. On the
run loop it is an ordinary `Detector` named "mcu": `observe` drains the queue, so the findings
pass the same `EventTracker` as every detector's (one open event per condition, cooldown,
hourly cap; EMERGENCY exempt). A missing or silent UART is counted and retried, never fatal.

Before the SoC sleeps, `prepare_sleep()` hands the MCU its thresholds (SET_CONFIG) and the SLEEP
request, at which the MCU takes the car's attitude as its tilt reference; polling pauses while
the SoC sleeps and `woke()` reads the MCU's log at once.

How far the MCU's log was read is kept in `cursor_file` (in the state dir), so a restarted agent
does not raise the MCU's old events again. The cursor is written one run-loop tick after its
findings were handed over, when the tick that took them has queued them: a crash in between
repeats events, never loses them.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge.detect.base import Detector, Finding, Observation
from edge.detect.policy import Policy
from edge.mcu.supervisor import Config
from edge.power.mculink import McuLink, McuLinkError, McuPoller, SerialTransport, findings
from lienwatch.clock import Clock

log = logging.getLogger("lienwatch.power")

QUEUE_CAPACITY = 256  # findings waiting for the run loop (the MCU's log holds fewer)
LOOP_WAIT_S = 0.05  # the thread's rest between polls (the poller itself keeps `interval_s`)
REOPEN_S = 30.0  # a UART that could not be opened is tried again this often
CURSOR_FILE = "mcu_cursor.json"  # {"mcu_boot": id, "next_index": n}: how far the log was read


class McuWatch(Detector):
    """The MCU's event log as findings of detector "mcu"; condition = the event's kind."""

    kind = "mcu"

    def __init__(self, device: str, clock: Clock, *, baudrate: int = 115200, interval_s: float = 10.0,
                 timeout_s: float = 0.3, wall_ns: Callable[[], int] | None = None, name: str = "mcu",
                 cursor_file: Path | None = None, config: Config | None = None) -> None:
        # one-shot events: raised at once, cleared after a minute, raised again after a minute
        super().__init__(name, Policy(debounce_s=0.0, clear_s=60.0, cooldown_s=60.0))
        self.device, self.clock = device, clock
        self.baudrate, self.interval_s, self.timeout_s = baudrate, interval_s, timeout_s
        self.wall_ns = wall_ns  # the agent's UTC (GNSS-corrected) for the MCU's time sync
        self.poller: McuPoller | None = None
        self.open_errors = 0
        self.last_open_error = ""
        self.dropped = 0
        self._queue: collections.deque[Finding] = collections.deque()
        self.cursor_file = cursor_file
        self._cursor: tuple[int, int] | None = None  # read so far (with the queued findings)
        self._handed: tuple[int, int] | None = None  # read and handed to the run loop last tick
        self._saved: tuple[int, int] | None = _load_cursor(cursor_file)
        self.config = config or Config()  # handed to the MCU before each sleep
        self.asleep = False  # the SoC sleeps: no polling (on a board, nothing would run)
        self._lock = threading.Lock()
        self._link_lock = threading.Lock()  # one request at a time: the poll thread or the run loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, values: Mapping[str, Any], clock: Clock,
                    wall_ns: Callable[[], int] | None = None,
                    state_dir: Path | None = None) -> McuWatch | None:
        """From the agent config's validated `power.mcu.*` keys; None when no device is set."""
        device = str(values["power.mcu.device"])
        if not device:
            return None
        return cls(device, clock, baudrate=int(values["power.mcu.baudrate"]),
                   interval_s=float(values["power.mcu.poll_interval_s"]),
                   timeout_s=float(values["power.mcu.timeout_s"]), wall_ns=wall_ns,
                   cursor_file=None if state_dir is None else state_dir / CURSOR_FILE,
                   config=mcu_config(values))

    # ------------------------------------------------------------------ the link's thread

    def poll_once(self) -> None:
        """Open the UART if needed, poll it once (the poller keeps its interval), queue findings."""
        if self.poller is None:
            try:
                transport = SerialTransport(Path(self.device), self.baudrate)
            except McuLinkError as error:
                self.open_errors += 1
                self.last_open_error = str(error)
                return
            self.poller = McuPoller(McuLink(transport, self.clock, timeout_s=self.timeout_s,
                                            wall_ns=self.wall_ns), self.clock,
                                    self.interval_s, resume=self._saved)
        with self._link_lock:
            if self.asleep:
                return
            found = self.poller.poll()
            self._take(found, self.poller)

    def _take(self, found: Sequence[Finding], poller: McuPoller) -> None:
        with self._lock:
            self._cursor = poller.cursor()
            for finding in found:
                if len(self._queue) >= QUEUE_CAPACITY:
                    self.dropped += 1  # shown in status; the run loop is not taking them
                    continue
                self._queue.append(finding)

    def prepare_sleep(self) -> str | None:
        """Hand the MCU its thresholds and the SLEEP request (the tilt reference is the car's
        attitude now); None when the MCU took both and logged nothing new, else why not to sleep."""
        with self._link_lock:
            poller = self.poller
            if poller is None or not poller.in_session:
                return "no session with the MCU"
            try:
                poller.link.set_config(self.config)
                poller.link.sleep()
                events = poller.link.read_events()  # logged since the last poll: not slept through
            except (McuLinkError, OSError) as error:
                poller.errors += 1
                poller.last_error = str(error)
                poller.in_session = False  # HELLO and time sync again at the next poll
                return f"the MCU did not take the sleep: {error}"
            poller.events += len(events)
            self._take(findings(events), poller)
            if events:
                return f"the MCU logged {len(events)} new event(s)"
            self.asleep = True
            return None

    def woke(self) -> None:
        """The SoC is up again: read the MCU's log at once (what woke us, what it saw meanwhile)."""
        with self._link_lock:
            self.asleep = False
            if self.poller is not None:
                self.poller.poll_now()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mcu", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as error:  # a bug here must not end the thread silently
                self.open_errors += 1
                self.last_open_error = f"{type(error).__name__}: {error}"[:200]
                log.error("MCU link", extra={"detail": self.last_open_error})
            self._stop.wait(LOOP_WAIT_S if self.poller is not None else REOPEN_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self.poller is not None and isinstance(self.poller.link.transport, SerialTransport):
            self.poller.link.transport.close()

    # ------------------------------------------------------------------ the run loop

    def observe(self, observation: Observation) -> Sequence[Finding]:
        self._save_cursor(self._handed)  # last tick's findings are queued by now
        with self._lock:
            found = list(self._queue)
            self._queue.clear()
            self._handed = self._cursor
        # "mcu.tow" → condition "tow" of detector "mcu": one open event per kind of MCU event
        return [replace(f, detector=self.name, condition=f.detector.partition(".")[2] or f.detector)
                for f in found]

    def state(self) -> dict[str, object]:
        link: dict[str, object] = self.poller.snapshot() if self.poller is not None else {"in_session": False}
        link["link_errors"] = link.pop("errors", 0)  # "errors" is the pipeline's (observe raised)
        return {"device": self.device, **link, "open_errors": self.open_errors,
                "last_open_error": self.last_open_error, "dropped": self.dropped}

    def save_cursor(self) -> None:
        """Keep how far the log was read, up to what the run loop has taken (before a sleep)."""
        with self._lock:
            handed = self._handed
        self._save_cursor(handed)

    def _save_cursor(self, cursor: tuple[int, int] | None) -> None:
        if cursor is None or cursor == self._saved or self.cursor_file is None:
            return
        tmp = self.cursor_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"mcu_boot": cursor[0], "next_index": cursor[1]}))
            os.replace(tmp, self.cursor_file)
        except OSError as error:  # the state dir is checked at start; a full disk repeats events
            self.last_open_error = f"cannot keep the MCU log cursor: {error}"[:200]
            return
        self._saved = cursor


def _load_cursor(path: Path | None) -> tuple[int, int] | None:
    """The saved cursor, or None (no file, or a damaged one: the MCU's log is read from 0)."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
        boot, index = data["mcu_boot"], data["next_index"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if type(boot) is not int or type(index) is not int or not (0 <= boot < 2**32 and 0 <= index < 2**32):
        return None
    return boot, index


def mcu_config(values: Mapping[str, Any]) -> Config:
    """The supervisor's thresholds from the agent config's validated `power.mcu.*` keys."""
    config = Config()
    config.motion_mg = int(values["power.mcu.motion_mg"])
    config.confirm_ms = round(float(values["power.mcu.confirm_s"]) * 1000)
    config.tilt_deg = int(values["power.mcu.tilt_deg"])
    config.unplug_mv = round(float(values["power.mcu.unplug_v"]) * 1000)
    config.low_mv = round(float(values["power.mcu.low_v"]) * 1000)
    config.sample_ms = int(values["power.mcu.sample_s"]) * 1000
    return config
