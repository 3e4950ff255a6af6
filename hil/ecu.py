"""An OBD-II ECU emulator that answers J1979 requests over ISO-TP on a python-can bus.

Shared by the sources' tests and the HIL runner. Each `EmulatedEcu` answers functional requests
(0x7DF / 0x18DB33F1) and physical ones on its own id with the vehicle state in `values`
(physical values, encoded with the same J1979 table the agent decodes with), its DTCs and VIN.
Misbehaviour found in real cars is configurable per ECU:

- `delay_s`: answers late (a slow ECU); `pending_first`: sends NRC 0x78 (response pending) first;
- `reject_multi_pid`: refuses requests for several PIDs with NRC 0x12, as older ECUs do;
- `silent`: never answers (ignition off, ECU asleep) — can be toggled while running;
- `refuse_services`: services answered with NRC 0x11 (service not supported).

Beyond J1979: `vehicle_info` answers mode 09 calibration ids, CVNs, ECU name and in-use counters,
and `dids` answers UDS ReadDataByIdentifier (0x22) with manufacturer data (NRC 0x31 for a DID it
does not have); `obd = False` makes an ECU that speaks only UDS (a battery ECU, `demo_bms()`).

Run it in-process (`EcuEmulator(bus, ecus).start()`) on a `virtual` bus, or as its own process on
`udp_multicast` with `python -m hil.ecu --channel ff11::1:2:3`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import can

from edge.sources.obd.isotp_link import IsoTpEndpoint, parse_single_frame
from edge.sources.obd.pids import (
    PIDS,
    SUPPORTED_PID_RANGES,
    VIN,
    encode_dtc,
    encode_supported,
    encode_vehicle_info,
)
from lienwatch.cliargs import number, udp_port
from lienwatch.clock import Clock, SystemClock

NRC_SERVICE_NOT_SUPPORTED = 0x11
NRC_SUB_FUNCTION_NOT_SUPPORTED = 0x12
NRC_INCORRECT_LENGTH = 0x13
NRC_REQUEST_OUT_OF_RANGE = 0x31
NRC_RESPONSE_PENDING = 0x78


@dataclass
class EmulatedEcu:
    """One ECU: its address index (0 → 0x7E0/0x7E8), state and misbehaviour."""

    index: int = 0
    values: dict[int, float | dict[str, float]] = field(default_factory=dict)  # a number: the first field
    vin: str | None = None
    dtcs: list[str] = field(default_factory=list)
    pending_dtcs: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    pending_first: bool = False
    reject_multi_pid: bool = False
    silent: bool = False
    refuse_services: set[int] = field(default_factory=set)
    vehicle_info: dict[int, list[str] | dict[str, int]] = field(default_factory=dict)  # mode 09 PID → items
    dids: dict[int, bytes] = field(default_factory=dict)  # UDS 0x22: DID → data bytes
    obd: bool = True  # False: answers only UDS (0x22), as a battery ECU does
    requests_seen: int = 0

    @property
    def supported(self) -> set[int]:
        pids = set(self.values)
        bases = {b for b in SUPPORTED_PID_RANGES if any(p > b + 32 for p in pids)}
        return pids | {b + 0x20 for b in bases if b + 0x20 in SUPPORTED_PID_RANGES}

    def answer(self, request: bytes) -> list[bytes]:
        """The replies (in order) this ECU gives to `request`; empty for no answer."""
        self.requests_seen += 1
        if self.silent or not request:
            return []
        service = request[0]
        if service in self.refuse_services:
            return [bytes([0x7F, service, NRC_SERVICE_NOT_SUPPORTED])]
        replies = [bytes([0x7F, service, NRC_RESPONSE_PENDING])] if self.pending_first else []
        if service == 0x22:
            return self._read_dids(request, replies)
        if not self.obd:
            return []
        if service == 0x01:
            pids = list(request[1:])
            if not pids:
                return []
            if len(pids) > 1 and self.reject_multi_pid:
                return [bytes([0x7F, 0x01, NRC_SUB_FUNCTION_NOT_SUPPORTED])]
            body = bytearray([0x41])
            supported = self.supported
            for pid in pids:
                if pid in SUPPORTED_PID_RANGES:
                    if pid == 0 or pid in supported:
                        body += bytes([pid]) + encode_supported(pid, supported)
                elif pid in self.values and pid in PIDS:
                    body += bytes([pid]) + PIDS[pid].encode(self.values[pid])
            return [*replies, bytes(body)] if len(body) > 1 else []  # J1979: no answer if nothing supported
        if service in (0x03, 0x07):
            codes = self.dtcs if service == 0x03 else self.pending_dtcs
            return [*replies, bytes([service + 0x40, len(codes)]) + b"".join(encode_dtc(c) for c in codes)]
        if service == 0x09 and request[1:2] == b"\x02" and self.vin:
            return [*replies, encode_vehicle_info(VIN, [self.vin])]
        if service == 0x09 and len(request) == 2 and request[1] in self.vehicle_info:
            return [*replies, encode_vehicle_info(request[1], self.vehicle_info[request[1]])]
        if service == 0x09 and request[1:2] == b"\x00":
            info_pids = set(self.vehicle_info) | ({VIN} if self.vin else set())
            return [*replies, b"\x49\x00" + encode_supported(0, info_pids)]
        return []

    def _read_dids(self, request: bytes, replies: list[bytes]) -> list[bytes]:
        """UDS ReadDataByIdentifier: `22 DID [DID ...]` → `62 DID data [DID data ...]`."""
        if len(request) < 3 or len(request) % 2 == 0:
            return [bytes([0x7F, 0x22, NRC_INCORRECT_LENGTH])]
        body = bytearray([0x62])
        for i in range(1, len(request), 2):
            did = (request[i] << 8) | request[i + 1]
            if did not in self.dids:
                return [bytes([0x7F, 0x22, NRC_REQUEST_OUT_OF_RANGE])]
            body += request[i : i + 2] + self.dids[did]
        return [*replies, bytes(body)]


class EcuEmulator:
    """Serves a set of `EmulatedEcu`s on one bus from a background thread (or `serve_once`)."""

    def __init__(
        self,
        bus: can.BusABC,
        ecus: Sequence[EmulatedEcu],
        *,
        extended_29bit: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.bus = bus
        self.ecus = list(ecus)
        self.extended = extended_29bit
        self.clock = clock or SystemClock()
        self._endpoints = {
            ecu.index: IsoTpEndpoint(
                bus, rxid=self._request_id(ecu), txid=self._response_id(ecu), extended=extended_29bit
            )
            for ecu in self.ecus
        }
        self._due: list[tuple[int, int, int, bytes]] = []  # (due_ns, seq, ecu index, payload)
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames_seen = 0

    def _functional_id(self) -> int:
        return 0x18DB33F1 if self.extended else 0x7DF

    def _request_id(self, ecu: EmulatedEcu) -> int:
        return (0x18DA00F1 | ((0x10 + ecu.index) << 8)) if self.extended else 0x7E0 + ecu.index

    def _response_id(self, ecu: EmulatedEcu) -> int:
        return (0x18DAF100 | (0x10 + ecu.index)) if self.extended else 0x7E8 + ecu.index

    def _schedule(self, ecu: EmulatedEcu, request: bytes) -> None:
        now = self.clock.monotonic_ns()
        for i, reply in enumerate(ecu.answer(request)):
            pending = ecu.pending_first and i == 0 and reply[:1] == b"\x7f"
            delay = 0.0 if pending else ecu.delay_s
            heapq.heappush(self._due, (now + round(delay * 1e9) + i, next(self._seq), ecu.index, reply))

    def serve_once(self, wait_s: float = 0.002) -> None:
        """Handle what arrived within `wait_s` and send the replies that are due."""
        msg = self.bus.recv(wait_s)
        while msg is not None:
            self.frames_seen += 1
            if not msg.is_error_frame and not msg.is_remote_frame and msg.is_extended_id == self.extended:
                self._dispatch(msg)
            msg = self.bus.recv(0)
        for ecu in self.ecus:
            for payload in self._endpoints[ecu.index].poll():  # physical requests
                self._schedule(ecu, payload)
        now = self.clock.monotonic_ns()
        while self._due and self._due[0][0] <= now:
            _, _, index, reply = heapq.heappop(self._due)
            endpoint = self._endpoints[index]
            try:
                endpoint.send(reply)
            except can.CanError:
                continue
        for endpoint in self._endpoints.values():
            endpoint.poll()

    def _dispatch(self, msg: can.Message) -> None:
        if msg.arbitration_id == self._functional_id():
            payload = parse_single_frame(msg)
            if payload is not None:
                for ecu in self.ecus:
                    self._schedule(ecu, payload)
            return
        for ecu in self.ecus:
            if msg.arbitration_id == self._request_id(ecu):
                self._endpoints[ecu.index].feed(msg)

    def start(self) -> EcuEmulator:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ecu-emulator", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.serve_once()
            except (can.CanError, OSError, ValueError):  # a garbage frame never stops the emulator
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> EcuEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def full_table_values() -> dict[int, float | dict[str, float]]:
    """A value for every field of every PID of the J1979 table (each data byte 0x40), for load tests."""
    return {pid: {v.name: v.value for v in spec.decode(b"\x40" * spec.length)} for pid, spec in PIDS.items()}


def demo_bms(values: dict[str, float] | None = None, table: str = "example-bev") -> EmulatedEcu:
    """A battery ECU answering the DIDs of a shipped DID table with `values` (by VSS path)."""
    from edge.sources.uds.didtable import load_table

    did_table = load_table(table)
    state = {
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": 76.5,
        "Vehicle.Powertrain.TractionBattery.StateOfHealth": 93.2,
        "Vehicle.Powertrain.TractionBattery.Temperature.Average": 24.0,
        "Vehicle.Powertrain.TractionBattery.CurrentCurrent": -12.3,
        "Vehicle.Powertrain.TractionBattery.ChargeCycles": 412,
        "Vehicle.Powertrain.TractionBattery.CellVoltage.Min": 3.912,
        "Vehicle.Powertrain.TractionBattery.CellVoltage.Max": 3.958,
        **(values or {}),
    }
    index = did_table.request_id - 0x7E0 if not did_table.extended_29bit else 4
    return EmulatedEcu(index=index, obd=False,
                       dids={did: did_table.encode(did, state) for did in did_table.dids})


def demo_vehicle(*, full_table: bool = False) -> list[EmulatedEcu]:
    """The emulated vehicle of the HIL bench: an engine ECU and a slower transmission ECU.

    With `full_table` the engine ECU supports every PID of the J1979 table (its own values kept).
    """
    engine = EmulatedEcu(
        index=0,
        values={
            0x01: 1,
            0x04: 31.4,
            0x05: 88,
            0x0C: 1726,
            0x0D: 50,
            0x0F: 24,
            0x10: 12.5,
            0x1F: 600,
            0x21: 12,
            0x2F: 62.7,
            0x31: 1523,
            0x42: 14.2,
            0x46: 18,
            0x5C: 95,
            0xA6: 123_456_700.0,
        },
        vin="WVWZZZ1KZAW000001",
        dtcs=["P0143"],
        pending_dtcs=["P0300", "U0100"],
        vehicle_info={0x04: ["EMS-CAL-0001"], 0x06: ["1A2B3C4D"], 0x0A: ["ECM-EngineControl"],
                      0x08: {"OBDCOND": 120, "IGNCNTR": 480, "CATCOMP1": 96, "CATCOND1": 110}},
    )
    if full_table:
        engine.values = {**full_table_values(), **engine.values}
    transmission = EmulatedEcu(index=1, values={0x0D: 50, 0x05: 80}, reject_multi_pid=True, delay_s=0.01)
    return [engine, transmission]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Emulate the HIL vehicle's OBD-II ECUs on a CAN bus.")
    parser.add_argument("--interface", default="udp_multicast")
    parser.add_argument("--channel", default="ff11::1:2:3")
    parser.add_argument("--port", type=udp_port, default=43113, help="udp_multicast UDP port")
    parser.add_argument("--29bit", dest="extended", action="store_true")
    parser.add_argument("--full-table", action="store_true",
                        help="the engine ECU supports every PID of the J1979 table")
    parser.add_argument("--bms", action="store_true",
                        help="add the battery ECU of the example DID table (UDS 0x22 on 0x7E4/0x7EC)")
    parser.add_argument(
        "--seconds", type=number(0, low_open=False), default=0.0,
        help="stop after this long (0: run until killed)"
    )
    args = parser.parse_args(argv)
    from edge.sources.can_bus import open_bus

    extra = {"port": args.port} if args.interface == "udp_multicast" else {}
    bus = open_bus(args.interface, args.channel, **extra)
    ecus = demo_vehicle(full_table=args.full_table) + ([demo_bms()] if args.bms else [])
    emulator = EcuEmulator(bus, ecus, extended_29bit=args.extended).start()
    print("ready", flush=True)
    try:
        stop = threading.Event()
        stop.wait(args.seconds if args.seconds > 0 else None)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        bus.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
