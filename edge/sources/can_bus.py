"""Opening a python-can bus safely, and watching it for bus-off, error frames and silence.

On a board the interface is `socketcan` (including FPGA CAN cores the kernel exposes as
SocketCAN). Tests use `virtual` inside one process and `udp_multicast` across processes — and
then only on an interface-local IPv6 group (`ff11::/16`), which the kernel never transmits on a
real interface; python-can's default IPv4 group would leave the machine, so it is refused here.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import select
import socket
from dataclasses import dataclass
from typing import Any

import can

from cython_ext.canframe import FrameBatch
from edge.sources.base import HealthState, SourceError
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError

# SocketCAN error-frame classes (linux/can/error.h), carried in the error frame's arbitration id.
CAN_ERR_TX_TIMEOUT = 0x001
CAN_ERR_LOSTARB = 0x002
CAN_ERR_CRTL = 0x004
CAN_ERR_PROT = 0x008
CAN_ERR_TRX = 0x010
CAN_ERR_ACK = 0x020
CAN_ERR_BUSOFF = 0x040
CAN_ERR_BUSERROR = 0x080
CAN_ERR_RESTARTED = 0x100


def check_channel(interface: str, channel: str) -> None:
    """Refuse a udp_multicast channel that is not an interface-local IPv6 group (ff11::/16)."""
    if interface != "udp_multicast":
        return
    try:
        address = ipaddress.ip_address(channel.split("%")[0])
    except ValueError:
        raise ConfigError(
            f"udp_multicast channel {channel!r} is not an IP address; use e.g. ff11::1:2:3"
        ) from None
    if not (
        isinstance(address, ipaddress.IPv6Address)
        and (address.packed[0], address.packed[1] & 0x0F) == (0xFF, 0x01)
    ):
        raise ConfigError(
            f"udp_multicast channel {channel} would leave this machine; only interface-local IPv6 "
            "groups (ff11::/16, e.g. ff11::1:2:3) are allowed"
        )


def multicast_port(name: str, port: int) -> int | None:
    """A `port` option of a CAN source: None for python-can's default (0), else 1..65535.

    udp_multicast delivers by UDP port: every socket bound to a port receives every ff11:: group
    any socket on that port joined. Two emulated buses that must not see each other's frames
    (OBD and the body CAN, as behind a real car's gateway) need different groups *and* ports.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"sources.{name}.port must be 0 (default) or a UDP port 1..65535, got {port}")
    return port or None


def open_bus(
    interface: str,
    channel: str,
    *,
    bitrate: int | None = None,
    fd: bool = False,
    **kwargs: Any,
) -> can.BusABC:
    """A python-can bus; `SourceError` (with the reason) if the interface cannot be opened."""
    check_channel(interface, channel)
    options: dict[str, Any] = dict(kwargs)
    if bitrate is not None and interface not in ("virtual", "udp_multicast"):
        options["bitrate"] = bitrate
    if fd:
        options["fd"] = True
    if interface == "udp_multicast":
        options.setdefault("hop_limit", 0)
    try:
        return can.Bus(interface=interface, channel=channel, **options)
    except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as error:
        raise SourceError(f"cannot open CAN {interface}:{channel}: {error}") from None


def set_receive_buffer(bus: can.BusABC, size_bytes: int) -> int | None:
    """Ask for a `size_bytes` kernel receive buffer on the bus's socket, as `candump -r` does.

    Returns the size in effect (Linux doubles the request for its bookkeeping and caps it at
    2 × net.core.rmem_max), or None when the bus has no socket (e.g. `virtual`).
    """
    try:
        fd = bus.fileno()
    except (NotImplementedError, AttributeError, OSError):
        return None
    if fd < 0:
        return None
    sock = socket.socket(fileno=os.dup(fd))  # the same kernel socket; closing it closes the dup only
    try:
        if size_bytes > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size_bytes)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError:
        return None
    finally:
        sock.close()


MAX_DATAGRAM_BYTES = 4096
"""python-can's udp_multicast receive size (its `max_buffer`); a CAN FD frame packs to ~200 bytes."""


class QueuedFrameReader:
    """Reads what a bus has queued in one batch: wait once for the first frame, then drain.

    python-can has no batch read, and its `recv()` costs ~8 µs a frame on `udp_multicast` (a
    select(), a recvmsg() with timestamp ancillary data, msgpack's dict, validation, a
    `can.Message`, its filter loop) — at 2,000 frames/s a third of the agent's CPU. So for
    `udp_multicast` the bus's own socket (`bus.fileno()`) is drained by compiled code
    (`cython_ext.canframe.FrameBatch.read_datagrams`: MSG_DONTWAIT reads, each datagram in the
    exact form python-can's `pack_message` writes unpacked in C, any other one by python-can's own
    `unpack_message(check=True)`); the frame's timestamp is then the sender's. Every other
    interface (SocketCAN on a board, `virtual`) goes through `bus.recv()`. A datagram that does not
    unpack into a CAN frame is counted in `malformed` and skipped.
    """

    def __init__(self, bus: can.BusABC, interface: str) -> None:
        self.bus = bus
        self.malformed = 0
        self._sock: socket.socket | None = None
        if interface == "udp_multicast" and not bus.filters:
            from can.interfaces.udp_multicast.utils import unpack_message

            self._unpack = unpack_message
            fd = bus.fileno()
            if fd >= 0:  # the same kernel socket; closing the dup closes the dup only
                self._sock = socket.socket(fileno=os.dup(fd))

    def read_into(self, batch: FrameBatch, timeout_s: float, limit: int) -> int:
        """Fill `batch` (cleared first) with up to `limit` frames: those queued, or the first to
        come within `timeout_s`. Returns how many."""
        batch.clear()
        sock = self._sock
        if sock is None:
            msg = self.bus.recv(timeout_s)
            while msg is not None:
                batch.append_message(msg)
                if len(batch) >= limit:
                    break
                msg = self.bus.recv(0)
            return len(batch)
        if timeout_s > 0 and not select.select([sock], [], [], timeout_s)[0]:
            return 0
        try:
            self.malformed += batch.read_datagrams(sock.fileno(), limit, self._unpack)
        except OSError as error:
            raise can.CanOperationError(f"failed to read the CAN socket: {error}") from error
        return len(batch)

    def read(self, timeout_s: float, limit: int) -> list[can.Message]:
        """`read_into` as `can.Message`s."""
        batch = FrameBatch(max(limit, 1))
        self.read_into(batch, timeout_s, limit)
        return batch.messages()

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


@dataclass(slots=True)
class BusStatus:
    """What the monitor concluded: a health state and the reason in words."""

    state: HealthState
    detail: str


class BusMonitor:
    """Counts frames and error frames; detects bus-off, error storms and a silent bus.

    Bus-off is reported from a SocketCAN error frame with CAN_ERR_BUSOFF (cleared by a
    CAN_ERR_RESTARTED frame or by ordinary traffic afterwards) or from the interface's `state`.
    A bus is silent when no frame at all arrived for `silent_after_s` — an ignition-off car, an
    unplugged harness or a wrong bitrate look alike here, so it is reported as degraded, not failed.
    """

    def __init__(self, clock: Clock, *, silent_after_s: float = 5.0, error_window: int = 100) -> None:
        self.clock = clock
        self.silent_after_ns = round(silent_after_s * 1e9)
        self.frames = 0
        self.error_frames = 0
        self.bus_off_events = 0
        self.bus_off = False
        self.send_errors = 0
        self._opened_ns = clock.monotonic_ns()
        self._last_frame_ns: int | None = None
        self._recent: collections.deque[bool] = collections.deque(maxlen=error_window)
        self._recent_errors = 0  # error frames among `_recent`

    def observe(self, msg: can.Message, now_ns: int | None = None) -> bool:
        """Account one message received at `now_ns` (default: now); True if it is a data frame."""
        now_ns = self.clock.monotonic_ns() if now_ns is None else now_ns
        if msg.is_error_frame:
            self.observe_error(msg.arbitration_id, now_ns)
            return False
        self.observe_frames(1, now_ns)
        return not msg.is_remote_frame

    def observe_error(self, arbitration_id: int, now_ns: int) -> None:
        """Account one error frame (its class bits in `arbitration_id`) received at `now_ns`."""
        self._last_frame_ns = now_ns
        self.error_frames += 1
        self._remember(True)
        if arbitration_id & CAN_ERR_BUSOFF:
            if not self.bus_off:
                self.bus_off_events += 1
            self.bus_off = True
        if arbitration_id & CAN_ERR_RESTARTED:
            self.bus_off = False

    def observe_frames(self, count: int, now_ns: int) -> None:
        """Account `count` data or remote frames received at `now_ns` (as `count` × `observe`)."""
        if count <= 0:
            return
        self._last_frame_ns = now_ns
        self.frames += count
        self.bus_off = False
        recent = self._recent
        if count >= (recent.maxlen or 0):
            recent.clear()
            recent.extend([False] * (recent.maxlen or 0))
            self._recent_errors = 0
            return
        for _ in range(count):
            self._remember(False)

    def send_failed(self) -> None:
        self.send_errors += 1

    def _remember(self, is_error: bool) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._recent_errors -= 1
        recent.append(is_error)
        self._recent_errors += is_error

    def status(self, bus: can.BusABC | None = None) -> BusStatus:
        if bus is not None and getattr(bus, "state", None) == can.BusState.ERROR:
            return BusStatus(HealthState.DEGRADED, "bus-off (controller in error state)")
        if self.bus_off:
            return BusStatus(HealthState.DEGRADED, "bus-off")
        since = self._last_frame_ns if self._last_frame_ns is not None else self._opened_ns
        if self.clock.monotonic_ns() - since >= self.silent_after_ns:
            return BusStatus(HealthState.DEGRADED, "bus silent")
        if len(self._recent) >= 10 and self._recent_errors * 2 > len(self._recent):
            return BusStatus(HealthState.DEGRADED, "error frames on the bus")
        return BusStatus(HealthState.OK, "")
