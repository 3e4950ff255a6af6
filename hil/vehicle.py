"""An emulated vehicle for the bench: OBD-II ECUs on CAN, a GNSS receiver on a pty, 12 V supply in sysfs.

`EmulatedVehicle` is what the demo and HIL scenarios plug a real agent process into:
- the HIL ECUs (`hil.ecu.demo_vehicle`) answer OBD-II over ISO-TP on a python-can `udp_multicast`
  bus bound to an interface-local IPv6 group (`ff11::…`), so CAN frames never leave the machine;
- a GNSS receiver writes NMEA (`hil.gnss`) for a car driving at `speed_kmh` to a pseudo-terminal,
  which the agent opens like a serial port;
- a fake sysfs (`edge.sources.sysfs.FakeSysfs`) holds the supply voltage and backup battery.
`agent_sources_toml()` returns the agent's `[[sources]]` tables for exactly this vehicle.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from edge.sources.can_bus import open_bus
from edge.sources.sysfs import FakeSysfs
from hil.ecu import EcuEmulator, demo_vehicle
from hil.gnss import NmeaEpoch, default_sats, epoch_sentences

# Zurich-Oerlikon: where the emulated car starts its drive.
START_LAT, START_LON = 47.4106, 8.5441
METRES_PER_DEGREE_LAT = 111_320.0


class EmulatedVehicle:
    """A running emulated vehicle; use as a context manager (stops ECUs, GNSS and closes the pty)."""

    def __init__(self, work_dir: Path, *, speed_kmh: float = 50.0, course_deg: float = 60.0,
                 gnss_hz: float = 1.0) -> None:
        self.work_dir = work_dir
        self.speed_kmh = speed_kmh
        self.course_deg = course_deg
        self.gnss_hz = gnss_hz
        self.can_group = f"ff11::1c:{os.getpid() & 0xFFFF:x}"
        # udp_multicast delivers by UDP port, whatever the group: a port of its own keeps other
        # emulated buses on this machine (benchmarks, parallel tests) off this car's bus.
        self.udp_port = 44000 + os.getpid() % 8000
        self.sysfs = FakeSysfs(work_dir / "sys")
        self.supply_prefix = self.sysfs.iio_voltage(13.9, divider=11.0)
        self.backup_dir = self.sysfs.power_supply(
            "backup", voltage_now=4_050_000, capacity=96,
                                                  status="Charging", online=1)
        self.epochs_sent = 0
        self._stop = threading.Event()
        self._bus = open_bus("udp_multicast", self.can_group, port=self.udp_port)
        self._ecus = EcuEmulator(self._bus, demo_vehicle()).start()
        self._pty_master, self._pty_slave = os.openpty()
        self.gnss_device = os.ttyname(self._pty_slave)
        self._gnss_thread = threading.Thread(target=self._gnss, name="hil-gnss", daemon=True)
        self._gnss_thread.start()

    def position_at(self, seconds: float) -> tuple[float, float]:
        """Where the car is `seconds` after the start of its straight drive."""
        metres = self.speed_kmh / 3.6 * seconds
        d_lat = metres * math.cos(math.radians(self.course_deg)) / METRES_PER_DEGREE_LAT
        d_lon = metres * math.sin(math.radians(self.course_deg)) / (
            METRES_PER_DEGREE_LAT * math.cos(math.radians(START_LAT)))
        return START_LAT + d_lat, START_LON + d_lon

    def _gnss(self) -> None:
        start = dt.datetime.now(dt.UTC).replace(microsecond=0)
        began = time.monotonic()
        period = 1.0 / self.gnss_hz
        while not self._stop.is_set():
            seconds = self.epochs_sent * period
            lat, lon = self.position_at(seconds)
            epoch = NmeaEpoch(time=start + dt.timedelta(seconds=seconds), lat=lat, lon=lon,
                              speed_kmh=self.speed_kmh, course_deg=self.course_deg, sats=default_sats())
            try:
                os.write(self._pty_master, ("\r\n".join(epoch_sentences(epoch)) + "\r\n").encode())
            except OSError:
                return
            self.epochs_sent += 1
            self._stop.wait(max(0.0, began + self.epochs_sent * period - time.monotonic()))

    def agent_sources_toml(self) -> str:
        """The agent's `[[sources]]` tables for this vehicle."""
        return "\n".join([
            "[[sources]]", 'kind = "obd"', 'interface = "udp_multicast"', f'channel = "{self.can_group}"',
            f"port = {self.udp_port}", "max_bus_load = 0.3",
            "[[sources]]", 'kind = "gnss"', f'device = "{self.gnss_device}"',
            "[[sources]]", 'kind = "power"',
            f'supply = {{ kind = "iio", path = "{self.supply_prefix}", divider = 11.0 }}',
            f'backup_battery = "{self.backup_dir}"', "period_s = 1.0",
        ]) + "\n"

    def close(self) -> None:
        self._stop.set()
        self._gnss_thread.join(5)
        self._ecus.stop()
        self._bus.shutdown()
        for fd in (self._pty_master, self._pty_slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> EmulatedVehicle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
