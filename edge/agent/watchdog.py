"""systemd integration without a dependency: READY/STATUS/STOPPING/WATCHDOG via $NOTIFY_SOCKET.

With `WatchdogSec=` in the unit, systemd sets WATCHDOG_USEC; the agent pings at half that period
from its run loop, so a wedged loop (not a dead process — Restart= covers that) gets restarted.
"""

from __future__ import annotations

import os
import socket

from lienwatch.clock import Clock, SystemClock


class Notifier:
    """sd_notify(3) over the datagram socket systemd passes; a no-op when not under systemd."""

    def __init__(self, clock: Clock | None = None, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if environ is None else environ
        self.clock = clock or SystemClock()
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_ns = int(usec) * 1000 // 2 if enabled else None
        self._last_ping_ns: int | None = None
        self.sent: list[str] = []  # what was sent, for status and tests

    @property
    def active(self) -> bool:
        return self._address is not None

    def notify(self, state: str) -> bool:
        if self._address is None:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(state.encode(), self._address)
            except OSError:
                return False
        self.sent.append(state)
        del self.sent[:-20]
        return True

    def ready(self, status: str = "running") -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def ping_if_due(self) -> bool:
        """Send WATCHDOG=1 if half the watchdog period passed since the last ping."""
        if self.watchdog_interval_ns is None:
            return False
        now = self.clock.monotonic_ns()
        if self._last_ping_ns is not None and now - self._last_ping_ns < self.watchdog_interval_ns:
            return False
        self._last_ping_ns = now
        return self.notify("WATCHDOG=1")
