"""The MCU supervisor: watches the parked car while the SoC is off, wakes it when it matters.

`step()` runs at every wake of the MCU (an interrupt or a timer; `sleep_ms()` says how long the
main loop may sleep). It:
- opens a confirmation window on the accelerometer's wake-on-motion interrupt and samples at
  10 Hz; motion in at least half the samples after `confirm_ms` is a MOTION event and wakes the
  SoC, anything less is a BUMP (logged, the SoC stays off);
- logs TILT (and wakes the SoC) when the window's mean gravity vector has turned past `tilt_deg`
  from the reference taken when the SoC went to sleep — a wheel lift;
- samples the supply every `sample_ms`: below `unplug_mv` twice running is UNPLUG (wakes the SoC),
  back above is PLUG, below `low_mv` is LOW_SUPPLY;
- answers the SoC on the UART link: HELLO, SET_CONFIG, SYNC_TIME, READ_EVENTS, SLEEP.
Runs on MicroPython and CPython (no typing imports, no dataclasses).
"""

import math
import struct

from . import eventlog, frame
from .hal import Hal

HELLO = 1
SET_CONFIG = 2
READ_EVENTS = 3
SYNC_TIME = 4
ACK = 5
SLEEP = 6
EVENTS = 0x83
ACK_OK = 0
ACK_REFUSED = 1
CONFIG_FORMAT = ">HHBHHH"  # motion_mg, confirm_ms, tilt_deg, unplug_mv, low_mv, sample_s
RECORDS_PER_FRAME = frame.MAX_PAYLOAD // eventlog.RECORD_SIZE
WINDOW_SAMPLE_MS = 100


class Config:
    def __init__(self) -> None:
        self.motion_mg = 80
        self.confirm_ms = 10_000
        self.tilt_deg = 10
        self.unplug_mv = 5_250  # Teltonika's unplug level: a car's supply never sags this far running
        self.low_mv = 11_900
        self.sample_ms = 60_000

    def pack(self) -> bytes:
        return struct.pack(CONFIG_FORMAT, self.motion_mg, self.confirm_ms, self.tilt_deg, self.unplug_mv,
                           self.low_mv, self.sample_ms // 1000)

    @staticmethod
    def unpack(payload: bytes) -> "Config | None":
        """A config from SET_CONFIG's payload, or None if it is malformed or out of range."""
        if len(payload) != struct.calcsize(CONFIG_FORMAT):
            return None
        motion, confirm, tilt, unplug, low, sample_s = struct.unpack(CONFIG_FORMAT, payload)
        if not (10 <= motion <= 2000 and 500 <= confirm <= 60_000 and 1 <= tilt <= 90
                and 3000 <= unplug < low <= 15_000 and 1 <= sample_s <= 3600):
            return None
        config = Config()
        config.motion_mg, config.confirm_ms, config.tilt_deg = motion, confirm, tilt
        config.unplug_mv, config.low_mv, config.sample_ms = unplug, low, sample_s * 1000
        return config


class Supervisor:
    def __init__(self, hal: Hal, config: Config | None = None) -> None:
        self.hal = hal
        self.config = config or Config()
        self.log = eventlog.EventLog.from_bytes(hal.store_read())
        self.decoder = frame.Decoder()
        self.sender = frame.Sender()
        self.clock_offset_ms: int | None = None  # Unix ms − ticks ms, once the SoC synced us
        self._window_start: int | None = None
        self._moving = 0
        self._samples = 0
        self._previous: tuple[int, int, int] | None = None
        self._sum = [0, 0, 0]
        self._reference: tuple[int, int, int] = hal.accel_mg()
        self._tilted = False
        self._low_count = 0
        self._unplugged = False
        self._low = False
        self._next_supply_ms = hal.ticks_ms()
        self.refused_commands = 0
        self._record(eventlog.BOOT, 0)
        self._send(HELLO, self._hello_payload())

    # ------------------------------------------------------------------ the loop

    def step(self) -> None:
        now = self.hal.ticks_ms()
        data = self.hal.uart_read()
        if data:
            for kind, seq, payload in self.decoder.feed(data, now):
                self._command(kind, seq, payload)
        self.decoder.expire(now)
        if self.hal.motion_irq() and self._window_start is None:
            self._window_start, self._moving, self._samples, self._previous = now, 0, 0, None
            self._sum = [0, 0, 0]
        if self._window_start is not None:
            self._sample_motion(now, self._window_start)
        if now >= self._next_supply_ms:
            self._next_supply_ms = now + self.config.sample_ms
            self._sample_supply()

    def sleep_ms(self) -> int:
        """How long the main loop may sleep before the next `step` (an interrupt wakes it sooner)."""
        if self._window_start is not None:
            return WINDOW_SAMPLE_MS
        return max(0, self._next_supply_ms - self.hal.ticks_ms())

    # ------------------------------------------------------------------ watching

    def _sample_motion(self, now: int, window_start: int) -> None:
        a = self.hal.accel_mg()
        self._samples += 1
        magnitude = math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])
        jolt = self._previous is not None and max(abs(a[i] - self._previous[i]) for i in range(3)) \
            > self.config.motion_mg
        if abs(magnitude - 1000) > self.config.motion_mg or jolt:
            self._moving += 1
        self._previous = a
        for i in range(3):
            self._sum[i] += a[i]
        if now - window_start >= self.config.confirm_ms:
            n = max(1, self._samples)
            mean = (self._sum[0] // n, self._sum[1] // n, self._sum[2] // n)  # vibration averages out
            angle = self._angle_deg(mean, self._reference)
            if not self._tilted and angle > self.config.tilt_deg:
                self._tilted = True
                self._record(eventlog.TILT, int(angle))
                self.hal.wake_soc()
            share = self._moving * 100 // max(1, self._samples)
            if self._moving * 2 >= self._samples:
                self._record(eventlog.MOTION, share)
                self.hal.wake_soc()
            else:
                self._record(eventlog.BUMP, share)
            self._window_start = None

    @staticmethod
    def _angle_deg(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
        dot = a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
        norms = math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]) \
            * math.sqrt(b[0] * b[0] + b[1] * b[1] + b[2] * b[2])
        if norms == 0:
            return 0.0
        return math.degrees(math.acos(max(-1.0, min(1.0, dot / norms))))

    def _sample_supply(self) -> None:
        mv = self.hal.supply_mv()
        if mv < self.config.unplug_mv:
            self._low_count += 1
            if self._low_count == 2 and not self._unplugged:
                self._unplugged = True
                self._record(eventlog.UNPLUG, mv)
                self.hal.wake_soc()
            return
        self._low_count = 0
        if self._unplugged:
            self._unplugged = False
            self._record(eventlog.PLUG, mv)
        if mv < self.config.low_mv and not self._low:
            self._low = True
            self._record(eventlog.LOW_SUPPLY, mv)
        elif mv >= self.config.low_mv + 200:
            self._low = False

    def _record(self, kind: int, value: int) -> None:
        now = self.hal.ticks_ms()
        when = now + self.clock_offset_ms if self.clock_offset_ms is not None else -now
        self.log.append(when, kind, value)
        self.hal.store_write(self.log.to_bytes())

    # ------------------------------------------------------------------ the link

    def _hello_payload(self) -> bytes:
        return struct.pack(">IQ", self.hal.boot_id(), self.hal.ticks_ms())

    def _send(self, kind: int, payload: bytes = b"") -> None:
        self.hal.uart_write(self.sender.frame(kind, payload))

    def _ack(self, seq: int, status: int) -> None:
        if status != ACK_OK:
            self.refused_commands += 1
        self._send(ACK, struct.pack(">HB", seq, status))

    def _command(self, kind: int, seq: int, payload: bytes) -> None:
        if kind == HELLO:
            self._send(HELLO, self._hello_payload())
        elif kind == SET_CONFIG:
            config = Config.unpack(payload)
            if config is not None:
                self.config = config
            self._ack(seq, ACK_OK if config is not None else ACK_REFUSED)
        elif kind == SYNC_TIME and len(payload) == 8:
            self.clock_offset_ms = struct.unpack(">q", payload)[0] - self.hal.ticks_ms()
            self._ack(seq, ACK_OK)
        elif kind == READ_EVENTS and len(payload) == 4:
            records = self.log.since(struct.unpack(">I", payload)[0])
            for i in range(0, len(records), RECORDS_PER_FRAME):
                self._send(EVENTS, b"".join(eventlog.pack(r) for r in records[i:i + RECORDS_PER_FRAME]))
            self._ack(seq, ACK_OK)
        elif kind == SLEEP and not payload:
            self._reference = self.hal.accel_mg()
            self._tilted = False
            self._ack(seq, ACK_OK)
        else:
            self._ack(seq, ACK_REFUSED)
