"""The supervisor on the reference board's STM32L476 (MicroPython only: needs `machine`).

Wiring (edge/power/profiles/tbox-reference.toml's parts): LIS2DH12 on I2C1 at 0x19 with INT1 on
pin A0, the 12 V supply through an 11:1 divider on ADC pin A1, the SoC's power-enable/wake line
on B0, the SoC's UART on UART2 at 115200 Bd. The event log is kept in a small file on the MCU's
flash (written only when an event is logged: a few writes a day), so it survives the SoC being
off and the MCU restarting. Copy edge/mcu/*.py to the board as the package `edge.mcu` and call
`board.main()` from main.py. Type-checked against micropython-stm32-stubs (`make typecheck`);
tests run the portable modules with `hal.SimHal` instead.
"""

import random
import time

import machine

from .hal import Hal
from .supervisor import Supervisor

ACCEL_ADDR = 0x19
LOG_FILE = "/flash/events.bin"
DIVIDER = 11
WOM_THRESHOLD_MG = 64


class Board(Hal):
    def __init__(self) -> None:
        self.i2c = machine.I2C(1, freq=400_000)
        # LIS2DH12: 10 Hz low-power XYZ; high-pass filter on interrupt 1; ±2 g; INT1 on any axis high
        for register, value in ((0x20, 0x2F), (0x21, 0x01), (0x22, 0x40), (0x23, 0x00),
                                (0x32, WOM_THRESHOLD_MG // 16), (0x33, 0x00), (0x30, 0x2A)):
            self.i2c.writeto_mem(ACCEL_ADDR, register, bytes([value]))
        self._irq = False
        self.int1 = machine.Pin("A0", machine.Pin.IN)
        self.int1.irq(self._on_motion, machine.Pin.IRQ_RISING)
        self.adc = machine.ADC(machine.Pin("A1"))
        self.wake_pin = machine.Pin("B0", machine.Pin.OUT, value=0)
        self.uart = machine.UART(2, 115200, timeout=0)
        self._ms = 0
        self._last = time.ticks_ms()
        self._boot = random.getrandbits(32)

    def _on_motion(self, pin: machine.Pin) -> None:
        self._irq = True

    def ticks_ms(self) -> int:
        now = time.ticks_ms()
        self._ms += time.ticks_diff(now, self._last)  # time.ticks_ms wraps; this does not
        self._last = now
        return self._ms

    def accel_mg(self) -> tuple[int, int, int]:
        raw = self.i2c.readfrom_mem(ACCEL_ADDR, 0x28 | 0x80, 6)  # OUT_X_L.., auto-increment
        values = []
        for i in range(3):
            high = raw[2 * i + 1]
            values.append((high - 256 if high > 127 else high) * 16)  # 8-bit low-power: 16 mg/digit
        return (values[0], values[1], values[2])

    def motion_irq(self) -> bool:
        fired = self._irq
        self._irq = False
        return fired

    def supply_mv(self) -> int:
        return self.adc.read_u16() * 3300 * DIVIDER // 65535

    def wake_soc(self) -> None:
        self.wake_pin.value(1)
        time.sleep_ms(20)
        self.wake_pin.value(0)

    def uart_read(self) -> bytes:
        data = self.uart.read()
        return data if data else b""

    def uart_write(self, data: bytes) -> None:
        self.uart.write(data)

    def store_read(self) -> bytes:
        try:
            with open(LOG_FILE, "rb") as f:
                data: bytes = f.read()
                return data
        except OSError:
            return b""

    def store_write(self, data: bytes) -> None:
        with open(LOG_FILE, "wb") as f:
            f.write(data)

    def boot_id(self) -> int:
        return self._boot


def main() -> None:
    board = Board()
    supervisor = Supervisor(board)
    while True:
        supervisor.step()
        machine.lightsleep(max(1, supervisor.sleep_ms()))  # INT1 and UART activity wake it early
