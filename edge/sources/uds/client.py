"""UDS ReadDataByIdentifier (service 0x22) over ISO-TP, to one ECU on its physical ids.

Requests `22 DID_hi DID_lo` go as a single frame to the table's request id; the reply on the
response id (`62 DID_hi DID_lo data...`, often several frames) is reassembled by the same
can-isotp endpoint the OBD client uses, which sends the flow control. As in the OBD client: NRC
0x78 (response pending) extends the wait to `pending_timeout_s`; any other negative response is
returned (and counted per NRC); no reply within `timeout_s` is a timeout (counted, and after 3 in
a row the ECU is `silent`); a reply to another DID (a late one) is counted as stale, never taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import can

from edge.sources.base import SourceError
from edge.sources.can_bus import BusMonitor
from edge.sources.obd.client import NRC_RESPONSE_PENDING, NegativeResponse
from edge.sources.obd.isotp_link import IsoTpEndpoint
from lienwatch.clock import Clock

READ_DATA_BY_IDENTIFIER = 0x22


@dataclass
class UdsStats:
    """What the client counted: replies, timeouts (total and in a row), NRCs, stale and malformed."""

    replies: int = 0
    timeouts: int = 0
    consecutive_timeouts: int = 0
    stale: int = 0
    malformed: int = 0
    negative: dict[int, int] = field(default_factory=dict)

    @property
    def silent(self) -> bool:
        return self.consecutive_timeouts >= 3


class UdsClient:
    """Reads DIDs of one ECU. Not thread-safe: the `uds` source's thread uses it."""

    def __init__(
        self,
        bus: can.BusABC,
        clock: Clock,
        *,
        request_id: int,
        response_id: int,
        extended_29bit: bool = False,
        timeout_s: float = 0.2,
        pending_timeout_s: float = 2.0,
        monitor: BusMonitor | None = None,
    ) -> None:
        self.bus = bus
        self.clock = clock
        self.response_id = response_id
        self.timeout_ns = round(timeout_s * 1e9)
        self.pending_timeout_ns = round(pending_timeout_s * 1e9)
        self.monitor = monitor or BusMonitor(clock)
        self.endpoint = IsoTpEndpoint(bus, rxid=response_id, txid=request_id, extended=extended_29bit)
        self.extended = extended_29bit
        self.stats = UdsStats()
        self.requests = 0

    def _pump(self, wait_s: float) -> list[bytes]:
        msg = self.bus.recv(wait_s)
        while msg is not None:
            if (self.monitor.observe(msg) and msg.arbitration_id == self.response_id
                    and msg.is_extended_id == self.extended):
                self.endpoint.feed(msg)
            msg = self.bus.recv(0)
        try:
            return self.endpoint.poll()
        except can.CanError as error:
            self.monitor.send_failed()
            raise SourceError(f"CAN send failed (flow control): {error}") from None

    def read_did(self, did: int) -> bytes | NegativeResponse | None:
        """The data of `did`, the ECU's negative response, or None when it did not answer in time."""
        if not 0 <= did <= 0xFFFF:
            raise ValueError(f"a DID is 0..0xFFFF, not {did}")
        self._pump(0)  # whatever was left over is stale by now
        request = bytes([READ_DATA_BY_IDENTIFIER, did >> 8, did & 0xFF])
        try:
            self.endpoint.send(request)
        except can.CanError as error:
            self.monitor.send_failed()
            raise SourceError(f"CAN send failed: {error}") from None
        self.requests += 1
        deadline = self.clock.monotonic_ns() + self.timeout_ns
        while (now := self.clock.monotonic_ns()) < deadline:
            for reply in self._pump((deadline - now) / 1e9):
                result = self._match(request, reply)
                if result is None:
                    continue
                if isinstance(result, NegativeResponse) and result.nrc == NRC_RESPONSE_PENDING:
                    deadline = self.clock.monotonic_ns() + self.pending_timeout_ns
                    continue
                self.stats.replies += 1
                self.stats.consecutive_timeouts = 0
                if isinstance(result, NegativeResponse):
                    self.stats.negative[result.nrc] = self.stats.negative.get(result.nrc, 0) + 1
                return result
        self.stats.timeouts += 1
        self.stats.consecutive_timeouts += 1
        return None

    def _match(self, request: bytes, reply: bytes) -> bytes | NegativeResponse | None:
        if len(reply) >= 3 and reply[0] == 0x7F and reply[1] == READ_DATA_BY_IDENTIFIER:
            return NegativeResponse(reply[1], reply[2])
        if len(reply) >= 3 and reply[0] == 0x62:
            if reply[1:3] == request[1:3]:
                return reply[3:]
            self.stats.stale += 1
            return None
        self.stats.malformed += 1
        return None
