"""An OBD-II (SAE J1979) client over ISO-TP: functional requests, per-ECU replies and state.

Requests go to the functional id (0x7DF, or 0x18DB33F1 with 29-bit addressing) as ISO-TP single
frames; every ECU answers on its own id (0x7E8..0x7EF / 0x18DAF1xx), possibly in several frames
(the VIN), so each responding ECU gets its own can-isotp endpoint that sends flow control to its
physical id. Replies are checked against the request (service and PIDs), so a slow ECU's late
answer to an earlier request is counted as stale, not taken for the current one.

Per ECU the client tracks: supported PIDs, whether it accepts multi-PID requests (an ECU that
answers NRC 0x12 to one gets single-PID requests from then on), timeouts and negative responses.

When the ECUs disagree (one takes multi-PID requests, another refuses them), PIDs a refusing ECU
supports are asked one per functional request, and the others in multi-PID requests sent to each
accepting ECU's physical id (0x7E0+n / 0x18DAxxF1), where no refusing ECU sees them — so one old
ECU does not turn every request into a single-PID one, and no late NRC 0x12 can be mistaken for
the answer to the next request.

Which ECUs answer a PID (`primary_only`): by default (`False`, the probe tool and `read_pids`)
every ECU that supports it. The `obd` source sets `primary_only`: each PID is asked, on its
physical id, of one ECU only — the lowest response id among the live ECUs that support it
(0x7E8, the engine ECU, by J1979 convention), the next one when that ECU goes silent — so a
signal gets one value per poll instead of one per ECU (a transmission ECU repeating vehicle speed
used to double the samples and the requests), and no other ECU's late answer can interfere.
PIDs that only silent ECUs support are still asked functionally, so an answer brings them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import can

from edge.sources.base import SourceError
from edge.sources.can_bus import BusMonitor
from edge.sources.obd.isotp_link import Addressing, IsoTpEndpoint, single_frame
from edge.sources.obd.pids import (
    MODE09_PIDS,
    SUPPORTED_PID_RANGES,
    VIN,
    ObdDecodeError,
    VehicleInfo,
    decode_dtcs,
    decode_supported,
    decode_vehicle_info,
    decode_vin,
    parse_mode01,
)
from lienwatch.clock import Clock

NRC_SUB_FUNCTION_NOT_SUPPORTED = 0x12  # also "incorrect message length or invalid format" in J1979
NRC_RESPONSE_PENDING = 0x78
MAX_PIDS_PER_REQUEST = 6


@dataclass(frozen=True, slots=True)
class NegativeResponse:
    """A 0x7F reply: the service it refuses and the negative response code (NRC)."""

    service: int
    nrc: int


Reply = bytes | NegativeResponse


@dataclass(frozen=True, slots=True)
class PidRequest:
    """One mode 01 request: its PIDs, and the ECU (response id) it goes to, or None: functional."""

    pids: tuple[int, ...]
    target: int | None = None


def _chunks(pids: Sequence[int], size: int, target: int | None) -> list[PidRequest]:
    return [PidRequest(tuple(pids[i : i + size]), target) for i in range(0, len(pids), size)]


@dataclass
class EcuState:
    """What the client knows about one ECU, keyed by its response id."""

    response_id: int
    supported: set[int] = field(default_factory=set)
    multi_pid_ok: bool = True
    replies: int = 0
    timeouts: int = 0
    consecutive_timeouts: int = 0
    negative: dict[int, int] = field(default_factory=dict)
    vin: str | None = None
    vehicle_info: dict[int, VehicleInfo] = field(default_factory=dict)  # mode 09 PID → decoded

    @property
    def silent(self) -> bool:
        return self.consecutive_timeouts >= 3


class ObdClient:
    """Talks J1979 on one bus. Not thread-safe: one thread (the OBD source's) uses it.

    `timeout_s` is how long to wait for the replies to one request (P2 of ISO 15765-4 is 50 ms;
    slow ECUs need more); an ECU answering NRC 0x78 (response pending) gets `pending_timeout_s`.
    Frames that are not OBD responses go to `on_other_frame` (e.g. a passive DBC decoder).
    Time is read from `clock`; waiting for frames uses the bus's own (real-time) receive timeout.
    """

    def __init__(
        self,
        bus: can.BusABC,
        clock: Clock,
        *,
        extended_29bit: bool = False,
        timeout_s: float = 0.1,
        pending_timeout_s: float = 2.0,
        monitor: BusMonitor | None = None,
        on_other_frame: Callable[[can.Message], None] | None = None,
        primary_only: bool = False,
    ) -> None:
        self.bus = bus
        self.clock = clock
        self.addressing = Addressing(extended_29bit=extended_29bit)
        self.timeout_ns = round(timeout_s * 1e9)
        self.pending_timeout_ns = round(pending_timeout_s * 1e9)
        self.monitor = monitor or BusMonitor(clock)
        self.on_other_frame = on_other_frame
        self.primary_only = primary_only
        self.ecus: dict[int, EcuState] = {}
        self._endpoints: dict[int, IsoTpEndpoint] = {}
        self.stale_replies = 0
        self.malformed_replies = 0
        self.other_ecu_frames = 0
        self.requests = 0
        self._discovering = False

    # --- transport ---------------------------------------------------------------------------

    def _endpoint(self, response_id: int) -> IsoTpEndpoint:
        endpoint = self._endpoints.get(response_id)
        if endpoint is None:
            endpoint = IsoTpEndpoint(
                self.bus,
                rxid=response_id,
                txid=self.addressing.request_id_for(response_id),
                extended=self.addressing.extended_29bit,
            )
            self._endpoints[response_id] = endpoint
        return endpoint

    def pump(self, wait_s: float) -> list[tuple[int, bytes]]:
        """Read frames for up to `wait_s` (until the first one), feed endpoints, return payloads."""
        msg = self.bus.recv(wait_s)
        while msg is not None:
            if self.monitor.observe(msg):
                ecu = self.addressing.ecu_of(msg)
                if ecu is not None and self.ecus and ecu not in self.ecus and not self._discovering:
                    # An ECU that did not answer discovery (a battery ECU another tester, e.g. the
                    # `uds` source, talks to): no endpoint, so no flow control of ours disturbs it.
                    self.other_ecu_frames += 1
                elif ecu is not None:
                    self._endpoint(ecu).feed(msg)
                elif self.on_other_frame is not None:
                    self.on_other_frame(msg)
            msg = self.bus.recv(0)
        payloads: list[tuple[int, bytes]] = []
        for ecu, endpoint in list(self._endpoints.items()):
            try:
                payloads.extend((ecu, p) for p in endpoint.poll())
            except can.CanError as error:
                self.monitor.send_failed()
                raise SourceError(f"CAN send failed (flow control): {error}") from None
        return payloads

    def request(
        self, payload: bytes, *, expect: Iterable[int] | None = None, target: int | None = None
    ) -> dict[int, Reply]:
        """Send one request; collect each ECU's reply until the timeout.

        Functional (0x7DF) by default; with `target` (an ECU's response id) physical, to that ECU
        alone. With `expect`, returns as soon as every expected ECU has answered (and counts a
        timeout against each that did not); without it (discovery), waits the whole timeout.
        """
        expected = set(expect) if expect is not None else None
        arbitration_id = (
            self.addressing.functional_id if target is None else self.addressing.request_id_for(target)
        )
        try:
            self.bus.send(single_frame(arbitration_id, payload, extended=self.addressing.extended_29bit))
        except can.CanError as error:
            self.monitor.send_failed()
            raise SourceError(f"CAN send failed: {error}") from None
        self.requests += 1
        start = self.clock.monotonic_ns()
        deadline = {e: start + self.timeout_ns for e in (expected or ())}
        default_deadline = start + self.timeout_ns
        replies: dict[int, Reply] = {}
        while True:
            now = self.clock.monotonic_ns()
            waiting = [e for e in deadline if e not in replies and now < deadline[e]]
            if (
                expected is not None
                and not waiting
                and all(e in replies or now >= deadline[e] for e in expected)
            ):
                break
            horizon = max([default_deadline, *[deadline[e] for e in waiting]])
            if now >= horizon:
                break
            for ecu, reply_bytes in self.pump((horizon - now) / 1e9):
                reply = self._match(payload, reply_bytes)
                if reply is None:
                    continue
                if isinstance(reply, NegativeResponse) and reply.nrc == NRC_RESPONSE_PENDING:
                    deadline[ecu] = self.clock.monotonic_ns() + self.pending_timeout_ns
                    continue
                replies[ecu] = reply
        for ecu, reply in replies.items():
            state = self.ecus.setdefault(ecu, EcuState(ecu))
            state.replies += 1
            state.consecutive_timeouts = 0
            if isinstance(reply, NegativeResponse):
                state.negative[reply.nrc] = state.negative.get(reply.nrc, 0) + 1
        for ecu in (expected or set()) - replies.keys():
            state = self.ecus.setdefault(ecu, EcuState(ecu))
            state.timeouts += 1
            state.consecutive_timeouts += 1
        return replies

    def _match(self, request: bytes, reply: bytes) -> Reply | None:
        """The reply if it answers `request`; None (counted) if stale or malformed."""
        if len(reply) >= 3 and reply[0] == 0x7F:
            if reply[1] == request[0]:
                return NegativeResponse(reply[1], reply[2])
            self.stale_replies += 1
            return None
        if not reply or reply[0] != request[0] + 0x40:
            self.stale_replies += 1
            return None
        if request[0] == 0x01:
            try:
                parsed, _ = parse_mode01(reply)
            except ObdDecodeError:
                self.malformed_replies += 1
                return None
            if not set(parsed) <= set(request[1:]):
                self.stale_replies += 1
                return None
        elif request[0] == 0x09 and (len(reply) < 2 or reply[1] != request[1]):
            self.stale_replies += 1
            return None
        return reply

    # --- J1979 services ----------------------------------------------------------------------

    def discover(self) -> dict[int, EcuState]:
        """Find the ECUs and their supported PIDs (0x00, 0x20, ... as far as each one chains).

        First one multi-PID request for all ranges; an ECU that refuses it (NRC 0x12) or answers
        only part is then asked one range at a time. Afterwards frames of ECUs not found here are
        ignored (counted in `other_ecu_frames`) until the next discovery.
        """
        self._discovering = True
        try:
            return self._discover()
        finally:
            self._discovering = False

    def _discover(self) -> dict[int, EcuState]:
        replies = self.request(bytes([0x01, *SUPPORTED_PID_RANGES[:MAX_PIDS_PER_REQUEST]]))
        single: list[int] = []
        for ecu, reply in replies.items():
            state = self.ecus.setdefault(ecu, EcuState(ecu))
            if isinstance(reply, NegativeResponse):
                if reply.nrc == NRC_SUB_FUNCTION_NOT_SUPPORTED:
                    state.multi_pid_ok = False
                single.append(ecu)
                continue
            parsed, _ = parse_mode01(reply)
            for base, mask in parsed.items():
                state.supported |= decode_supported(base, mask)
            if not parsed:
                single.append(ecu)
        if not replies:  # maybe every ECU is an old one that ignores multi-PID requests
            single = []
            for ecu, reply in self.request(b"\x01\x00").items():
                state = self.ecus.setdefault(ecu, EcuState(ecu))
                state.multi_pid_ok = False
                if isinstance(reply, bytes):
                    state.supported |= decode_supported(0x00, parse_mode01(reply)[0].get(0x00, b"\0" * 4))
                    single.append(ecu)
        for ecu in single:
            self._discover_single(self.ecus[ecu])
        return self.ecus

    def _discover_single(self, state: EcuState) -> None:
        for base in SUPPORTED_PID_RANGES:
            if base and base not in state.supported:
                break
            if base == 0 and state.supported:
                continue
            reply = self.request(bytes([0x01, base]), expect=[state.response_id]).get(state.response_id)
            if not isinstance(reply, bytes):
                break
            parsed, _ = parse_mode01(reply)
            state.supported |= decode_supported(base, parsed.get(base, b"\0" * 4))

    def plan(self, pids: Sequence[int]) -> list[PidRequest]:
        """The requests that read `pids` (in the given order of importance).

        From every ECU: up to 6 PIDs per functional request while every live ECU accepts
        multi-PID requests; one PID per request if none does; when they disagree, see the module
        docstring. With `primary_only`, physical requests to each PID's primary ECU (up to 6
        PIDs each if it accepts multi-PID requests).
        """
        wanted = (
            [p for p in pids if any(p in s.supported for s in self.ecus.values())]
            if self.ecus
            else list(pids)
        )
        if not self.primary_only or not self.ecus:
            return self._plan_every_ecu(wanted)
        live = sorted(e for e, s in self.ecus.items() if not s.silent)
        owners: dict[int | None, list[int]] = {}
        for pid in wanted:
            owner = next((e for e in live if pid in self.ecus[e].supported), None)
            owners.setdefault(owner, []).append(pid)
        requests = [(wanted.index(r.pids[0]), r) for r in self._plan_every_ecu(owners.pop(None, []))]
        for ecu, mine in owners.items():
            assert ecu is not None
            size = MAX_PIDS_PER_REQUEST if self.ecus[ecu].multi_pid_ok else 1
            requests += [(wanted.index(r.pids[0]), r) for r in _chunks(mine, size, ecu)]
        return [r for _, r in sorted(requests, key=lambda item: item[0])]

    def _plan_every_ecu(self, wanted: list[int]) -> list[PidRequest]:
        # A silent ECU (ignition off, unplugged) gets no physical requests to wait for; functional
        # ones still reach it, so an answer brings it back.
        live = [s for s in self.ecus.values() if not s.silent]
        concerned = [s for s in live if set(wanted) & s.supported]
        # A functional multi-PID request reaches every ECU: only when none refuses them, or a
        # refusing ECU that supports none of the PIDs would still answer NRC 0x12, maybe late.
        if len(wanted) <= 1 or all(s.multi_pid_ok for s in live):
            return _chunks(wanted, MAX_PIDS_PER_REQUEST, None)
        if not any(s.multi_pid_ok for s in concerned):
            return _chunks(wanted, 1, None)
        single_only = {p for s in concerned if not s.multi_pid_ok for p in s.supported}
        requests: list[tuple[int, PidRequest]] = [
            (wanted.index(p), PidRequest((p,), None)) for p in wanted if p in single_only
        ]
        for state in concerned:
            if state.multi_pid_ok:
                mine = [p for p in wanted if p not in single_only and p in state.supported]
                requests += [(wanted.index(r.pids[0]), r)
                             for r in _chunks(mine, MAX_PIDS_PER_REQUEST, state.response_id)]
        return [r for _, r in sorted(requests, key=lambda item: item[0])]

    def read_pids(self, pids: Sequence[int]) -> dict[int, dict[int, bytes]]:
        """Read mode 01 PIDs from every ECU that supports them: {ecu: {pid: data bytes}}.

        Requests as `plan` makes them; if an ECU that should answer refuses a multi-PID request
        (NRC 0x12) it is marked single-PID and the PIDs are asked again one by one.
        """
        out: dict[int, dict[int, bytes]] = {}
        for request in self.plan(pids):
            self.read(request, out)
        return out

    def read(self, request: PidRequest, out: dict[int, dict[int, bytes]]) -> None:
        """Send one planned request; add what each ECU answered to `out`."""
        group, target = list(request.pids), request.target
        if target is not None:
            expect: list[int] | None = [target]
        else:
            expect = [e for e, s in self.ecus.items() if set(group) & s.supported and not s.silent] or None
        replies = self.request(bytes([0x01, *group]), expect=expect, target=target)
        retry_single = False
        for ecu, reply in replies.items():
            if isinstance(reply, NegativeResponse):
                if reply.nrc == NRC_SUB_FUNCTION_NOT_SUPPORTED and len(group) > 1:
                    self.ecus.setdefault(ecu, EcuState(ecu)).multi_pid_ok = False
                    retry_single = True
                continue
            parsed, _ = parse_mode01(reply)
            out.setdefault(ecu, {}).update(parsed)
        if retry_single:
            for pid in group:
                self.read(PidRequest((pid,), target), out)

    def read_dtcs(self, mode: int = 0x03) -> dict[int, list[str]]:
        """Stored (mode 03) or pending (mode 07) DTCs per ECU; malformed replies are counted."""
        out: dict[int, list[str]] = {}
        expect = [e for e, s in self.ecus.items() if not s.silent] or None
        for ecu, reply in self.request(bytes([mode]), expect=expect).items():
            if isinstance(reply, bytes):
                try:
                    out[ecu] = decode_dtcs(reply)
                except ObdDecodeError:
                    self.malformed_replies += 1
        return out

    def read_vin(self) -> dict[int, str]:
        """The VIN (mode 09 PID 02) of each ECU that reports one."""
        out: dict[int, str] = {}
        # ECUs without a VIN do not answer at all, so wait the whole timeout and blame no one.
        for ecu, reply in self.request(b"\x09\x02").items():
            if isinstance(reply, bytes):
                try:
                    out[ecu] = decode_vin(reply)
                except ObdDecodeError:
                    self.malformed_replies += 1
                    continue
                self.ecus.setdefault(ecu, EcuState(ecu)).vin = out[ecu]
        return out

    def read_vehicle_info(self) -> dict[int, dict[int, VehicleInfo]]:
        """Mode 09 beyond the VIN: each ECU's supported PIDs (09 00), then calibration ids (04),
        CVNs (06), in-use counters (08, 0B) and ECU name (0A) as it supports them, one request each.

        An ECU that does not answer 09 00 is asked nothing more; malformed replies are counted.
        """
        out: dict[int, dict[int, VehicleInfo]] = {}
        supported: dict[int, set[int]] = {}
        for ecu, reply in self.request(b"\x09\x00").items():
            if isinstance(reply, bytes) and len(reply) >= 6:
                supported[ecu] = decode_supported(0x00, reply[2:6])
        for pid in MODE09_PIDS:
            if pid == VIN:
                continue
            askers = [e for e, pids in supported.items() if pid in pids]
            if not askers:
                continue
            for ecu, reply in self.request(bytes([0x09, pid]), expect=askers).items():
                if not isinstance(reply, bytes):
                    continue
                try:
                    info = decode_vehicle_info(reply)
                except ObdDecodeError:
                    self.malformed_replies += 1
                    continue
                out.setdefault(ecu, {})[pid] = info
                self.ecus.setdefault(ecu, EcuState(ecu)).vehicle_info[pid] = info
        return out
