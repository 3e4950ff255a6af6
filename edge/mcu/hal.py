"""The supervisor's thin hardware layer, and a simulated board that is a real, tiny implementation.

`Hal` is what the supervisor may touch: a millisecond tick, the accelerometer (mg, board axes)
and its wake-on-motion interrupt, the 12 V supply (mV), the GPIO that wakes the SoC, the UART to
the SoC, and a small store that survives the SoC being off (backup RAM). `board.Board` implements
it with MicroPython's `machine`; `SimHal` implements it in plain Python for the tests, on CPython
and under MicroPython alike.
"""


class Hal:
    def ticks_ms(self) -> int:
        raise NotImplementedError

    def accel_mg(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def motion_irq(self) -> bool:
        """True once per wake-on-motion interrupt since the last call."""
        raise NotImplementedError

    def supply_mv(self) -> int:
        raise NotImplementedError

    def wake_soc(self) -> None:
        raise NotImplementedError

    def uart_read(self) -> bytes:
        """Whatever has arrived (possibly nothing); never blocks."""
        raise NotImplementedError

    def uart_write(self, data: bytes) -> None:
        raise NotImplementedError

    def store_read(self) -> bytes:
        raise NotImplementedError

    def store_write(self, data: bytes) -> None:
        raise NotImplementedError

    def boot_id(self) -> int:
        raise NotImplementedError


class SimHal(Hal):
    """A simulated board: tests set gravity, vibration and supply, and move time by hand."""

    def __init__(self, boot_id: int = 0x1234ABCD) -> None:
        self.now_ms = 0
        self.gravity = (0, 0, 1000)
        self.vibration_mg = 0  # peak of an alternating disturbance on every axis
        self.wom_threshold_mg = 60  # the accelerometer's own wake-on-motion threshold
        self.supply = 12600
        self.rx = bytearray()  # from the SoC
        self.tx = bytearray()  # to the SoC
        self.store = b""
        self.wakes = 0
        self._irq = False
        self._flip = 1
        self._boot_id = boot_id

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        if self.vibration_mg > self.wom_threshold_mg:
            self._irq = True

    def ticks_ms(self) -> int:
        return self.now_ms

    def accel_mg(self) -> tuple[int, int, int]:
        self._flip = -self._flip
        v = self.vibration_mg * self._flip
        return (self.gravity[0] + v, self.gravity[1] + v, self.gravity[2] + v)

    def motion_irq(self) -> bool:
        fired = self._irq
        self._irq = False
        return fired

    def supply_mv(self) -> int:
        return self.supply

    def wake_soc(self) -> None:
        self.wakes += 1

    def uart_read(self) -> bytes:
        data = bytes(self.rx)
        self.rx = bytearray()
        return data

    def uart_write(self, data: bytes) -> None:
        self.tx.extend(data)

    def store_read(self) -> bytes:
        return self.store

    def store_write(self, data: bytes) -> None:
        self.store = bytes(data)

    def boot_id(self) -> int:
        return self._boot_id
