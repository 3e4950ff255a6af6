"""ISO-TP (ISO 15765-2) endpoints on a python-can bus, driven by the caller's own read loop.

can-isotp's `TransportLayerLogic` does the segmentation, flow control and timers; we feed it the
frames of its arbitration id and call `process()`. One thread reads the bus and demultiplexes to
many endpoints (one per ECU), instead of one thread per ECU as `NotifierBasedCanStack` would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import can
import isotp

# J1979 / ISO 15765-4: every frame has DLC 8; padding byte 0xCC as many scan tools use.
ISOTP_PARAMS = {
    "tx_data_min_length": 8,
    "tx_padding": 0xCC,
    "blocking_send": False,
    "stmin": 0,
    "blocksize": 0,
    "rx_flowcontrol_timeout": 1000,
    "rx_consecutive_frame_timeout": 1000,
    "max_frame_size": 4095,
}


@dataclass(frozen=True, slots=True)
class Addressing:
    """OBD-II addressing: 11-bit (0x7DF → 0x7E8..0x7EF) or 29-bit (0x18DB33F1 → 0x18DAF1xx)."""

    extended_29bit: bool = False
    tester_address: int = 0xF1

    @property
    def functional_id(self) -> int:
        return 0x18DB33F1 if self.extended_29bit else 0x7DF

    def ecu_of(self, msg: can.Message) -> int | None:
        """The ECU's response id if `msg` is an OBD response frame, else None."""
        arb = msg.arbitration_id
        if self.extended_29bit:
            if msg.is_extended_id and arb & 0x1FFFFF00 == 0x18DA0000 | (self.tester_address << 8):
                return int(arb)
            return None
        if not msg.is_extended_id and 0x7E8 <= arb <= 0x7EF:
            return int(arb)
        return None

    def request_id_for(self, response_id: int) -> int:
        """The physical request id (where flow control goes) of the ECU answering on `response_id`."""
        if self.extended_29bit:
            return 0x18DA0000 | ((response_id & 0xFF) << 8) | self.tester_address
        return response_id - 8

    def ecu_label(self, response_id: int) -> str:
        return f"0x{response_id:08X}" if self.extended_29bit else f"0x{response_id:03X}"


def to_isotp(msg: can.Message) -> isotp.CanMessage:
    return isotp.CanMessage(
        arbitration_id=msg.arbitration_id,
        dlc=msg.dlc,
        data=bytes(msg.data),
        extended_id=msg.is_extended_id,
        is_fd=msg.is_fd,
        bitrate_switch=msg.bitrate_switch,
    )


def to_python_can(msg: isotp.CanMessage) -> can.Message:
    return can.Message(
        arbitration_id=msg.arbitration_id,
        data=bytes(msg.data),
        is_extended_id=msg.is_extended_id,
        is_fd=msg.is_fd,
        bitrate_switch=msg.bitrate_switch,
    )


class IsoTpEndpoint:
    """One ISO-TP conversation (rx id, tx id) fed frame by frame; `poll()` yields whole payloads.

    Malformed frames (bad PCI, wrong sequence numbers, random bytes) are handled by can-isotp's
    state machine, which drops them and reports through `errors`.
    """

    def __init__(self, bus: can.BusABC, *, rxid: int, txid: int, extended: bool) -> None:
        mode = isotp.AddressingMode.Normal_29bits if extended else isotp.AddressingMode.Normal_11bits
        self.bus = bus
        self.inbox: deque[isotp.CanMessage] = deque(maxlen=4096)
        self.errors = 0
        self.layer = isotp.TransportLayerLogic(
            rxfn=self._rx,
            txfn=self._tx,
            address=isotp.Address(mode, txid=txid, rxid=rxid),
            error_handler=self._on_error,
            params=dict(ISOTP_PARAMS),
        )

    def _rx(self, timeout: float) -> isotp.CanMessage | None:
        return self.inbox.popleft() if self.inbox else None

    def _tx(self, msg: isotp.CanMessage) -> None:
        self.bus.send(to_python_can(msg))

    def _on_error(self, error: Exception) -> None:
        self.errors += 1

    def feed(self, msg: can.Message) -> None:
        self.inbox.append(to_isotp(msg))

    def send(self, payload: bytes) -> None:
        self.layer.send(payload)
        self.layer.process(do_rx=False)

    def poll(self) -> list[bytes]:
        """Process queued frames and due timers; return complete payloads received."""
        self.layer.process()
        out: list[bytes] = []
        while True:
            payload = self.layer.recv()
            if payload is None:
                return out
            out.append(bytes(payload))

    @property
    def busy(self) -> bool:
        return bool(self.inbox) or self.layer.transmitting() or self.layer.rx_state != self.layer.RxState.IDLE


def single_frame(arbitration_id: int, payload: bytes, *, extended: bool) -> can.Message:
    """An ISO-TP single frame (payload <= 7 bytes), padded to 8 bytes with 0xCC."""
    if not 0 < len(payload) <= 7:
        raise ValueError(f"a single frame carries 1..7 bytes, not {len(payload)}")
    data = bytes([len(payload)]) + payload
    return can.Message(arbitration_id=arbitration_id, data=data.ljust(8, b"\xcc"), is_extended_id=extended)


def parse_single_frame(msg: can.Message) -> bytes | None:
    """The payload of an ISO-TP single frame (classic CAN), or None if `msg` is not one."""
    data = bytes(msg.data)
    if not data or data[0] >> 4 != 0:
        return None
    length = data[0] & 0x0F
    if length == 0 or length > len(data) - 1:
        return None
    return data[1 : 1 + length]
