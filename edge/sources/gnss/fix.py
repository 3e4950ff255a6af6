"""GNSS fixes: one `GnssFix` per epoch, assembled from the sentences a receiver sends for it.

An epoch is the set of sentences with the same UTC time of day (GGA, RMC, GLL, GST, ZDA carry it; GSA,
GSV and VTG, which do not, belong to the epoch being assembled). A new time closes the previous
epoch. The position comes from GGA, else RMC, else GLL (a receiver that sends only GLL in an epoch
still yields a fix). Per constellation the fix keeps satellites in view, satellites used and their C/N0, so a
jamming detector can see all carriers drop at once while the position still holds.

Sentences a `SlowSentenceThrottle` kept from being parsed (GSA, GSV, GST, VTG, ZDA; see
`throttle.py`) still arrive here, unparsed. An epoch whose GSAs, GSVs or GST were all throttled
reuses what the last epoch that parsed them had: the GSA's 2D/3D mode (so the fix type is the same
as with every sentence parsed), PDOP and used satellites, the GSV's satellites in view and C/N0,
the GST's accuracy; `GnssFix.reused` names those types, so nobody takes the values for this
epoch's. A type the receiver did not send in an epoch is not reused (it is None, as before).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edge.sources.gnss.nmea import Sentence
from protocol.limits import MAX_TIME_NS
from protocol.messages import FixType as ProtocolFixType
from protocol.messages import GnssFix as ProtocolGnssFix

KNOTS_TO_KMH = 1.852

# Plausible ranges of a fix's values (`plausible`). A checksum only proves the receiver (or
# whoever wrote the log) meant it: a value outside these is nulled and counted. Where the wire
# format has a range (protocol/bodies.py), it is the same, so nothing kept here is refused there.
LAT_DEG, LON_DEG = 90.0, 180.0
ALT_M = (-1000.0, 20000.0)  # the wire's range: Dead Sea -430 m, and no car flies
SPEED_KMH = (0.0, 1000.0)  # the wire's range; GNSS speed over ground of a road vehicle
COURSE_DEG = (0.0, 360.0)  # 360 is read as 0
MAX_SATS = 72  # more than every constellation together puts above one horizon (~60)
DOP = (0.0, 99.99)  # the wire's HDOP range; receivers say 99.99 for "no solution"
H_ACC_M = (0.0, 100_000.0)
CN0_DBHZ = (0.0, 99.0)  # GSV's two digits


class FixType(enum.IntEnum):
    """Fix type. The integer is the value of `Vehicle.CurrentLocation.GNSSReceiver.FixType` and is
    the same as `protocol.messages.FixType` (NO_FIX, FIX_2D, FIX_3D, DGNSS, RTK_FLOAT, RTK_FIXED,
    DEAD_RECKONING); note it is not the GGA quality number (where 4 is RTK fixed, 5 RTK float)."""

    NONE = 0
    FIX_2D = 1
    FIX_3D = 2
    DGPS = 3
    RTK_FLOAT = 4
    RTK_FIXED = 5
    DEAD_RECKONING = 6

    def to_protocol(self) -> ProtocolFixType:
        return ProtocolFixType(int(self))

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def has_position(self) -> bool:
        return self is not FixType.NONE


_LABELS = {
    FixType.NONE: "none",
    FixType.FIX_2D: "2d",
    FixType.FIX_3D: "3d",
    FixType.DGPS: "dgps",
    FixType.RTK_FIXED: "rtk_fixed",
    FixType.RTK_FLOAT: "rtk_float",
    FixType.DEAD_RECKONING: "dead_reckoning",
}

_TIMED = frozenset({"GGA", "RMC", "GLL", "GST", "ZDA"})  # sentence types that carry the epoch's time
_POSITIONS = frozenset({"GGA", "RMC", "GLL"})  # types that carry a position: one of each per epoch

# GGA quality indicator → fix type (1 is refined by GSA's 2D/3D mode).
_GGA_QUALITY = {
    0: FixType.NONE,
    1: FixType.FIX_3D,
    2: FixType.DGPS,
    3: FixType.FIX_3D,
    4: FixType.RTK_FIXED,
    5: FixType.RTK_FLOAT,
    6: FixType.DEAD_RECKONING,
    7: FixType.NONE,
    8: FixType.NONE,
}
# RMC/VTG/GNS mode indicator (NMEA 2.3+).
_MODE = {
    "A": FixType.FIX_3D,
    "D": FixType.DGPS,
    "R": FixType.RTK_FIXED,
    "F": FixType.RTK_FLOAT,
    "E": FixType.DEAD_RECKONING,
    "N": FixType.NONE,
    "M": FixType.NONE,
    "S": FixType.NONE,
}

# Talker → constellation; GSA's NMEA 4.10 system id → constellation.
TALKER_CONSTELLATION = {
    "GP": "gps",
    "GL": "glonass",
    "GA": "galileo",
    "GB": "beidou",
    "BD": "beidou",
    "GQ": "qzss",
    "GI": "navic",
}
_SYSTEM_ID = {1: "gps", 2: "glonass", 3: "galileo", 4: "beidou", 5: "qzss", 6: "navic"}


def constellation_of_svid(svid: int) -> str:
    """Constellation from NMEA 4.0 satellite numbering (for GNGSA without a system id)."""
    if 1 <= svid <= 32:
        return "gps"
    if 33 <= svid <= 64 or 120 <= svid <= 158:
        return "sbas"
    if 65 <= svid <= 96:
        return "glonass"
    if 193 <= svid <= 200:
        return "qzss"
    if 201 <= svid <= 263 or 401 <= svid <= 437:
        return "beidou"
    if 301 <= svid <= 336:
        return "galileo"
    return "unknown"


@dataclass
class Constellation:
    """Satellites of one constellation in this epoch: in view, used, and C/N0 (dB-Hz) of each."""

    in_view: int = 0
    used: int = 0
    cn0_dbhz: dict[int, float] = field(default_factory=dict)

    @property
    def cn0_mean(self) -> float | None:
        values = [v for v in self.cn0_dbhz.values() if v > 0]
        return sum(values) / len(values) if values else None

    @property
    def cn0_max(self) -> float | None:
        values = [v for v in self.cn0_dbhz.values() if v > 0]
        return max(values) if values else None


@dataclass
class GnssFix:
    """One epoch's solution. `mono_ns` is when the epoch was complete (the injected clock);
    `time_utc_ns` is the receiver's UTC time when its date is known; None fields were not sent."""

    mono_ns: int
    time_utc_ns: int | None = None
    time_of_day: dt.time | None = None
    lat: float | None = None
    lon: float | None = None
    alt_m: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    fix: FixType = FixType.NONE
    sats: int | None = None
    hdop: float | None = None
    pdop: float | None = None
    h_acc_m: float | None = None
    constellations: dict[str, Constellation] = field(default_factory=dict)
    reused: frozenset[str] = frozenset()
    """Sentence types (`GSA`, `GSV`, `GST`) whose values are the last parsed ones, not this epoch's:
    they were throttled here (`slow_sentence_interval_s`), so at most about that interval old."""
    implausible: frozenset[str] = frozenset()
    """Fields the receiver sent with values outside their plausible range, nulled (`plausible`)."""

    @property
    def mean_cn0(self) -> float | None:
        values = [v for c in self.constellations.values() for v in c.cn0_dbhz.values() if v > 0]
        return sum(values) / len(values) if values else None

    def iso_time(self) -> str | None:
        if self.time_utc_ns is None:
            return None
        seconds, ns = divmod(self.time_utc_ns, 1_000_000_000)
        stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
        text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{text}.{ns // 1_000_000:03d}Z" if ns else f"{text}Z"

    def to_protocol(self, mono_to_wall_ns: int | None = None) -> ProtocolGnssFix | None:
        """The wire form (protocol.messages.GnssFix), or None without a position.

        Its time is the receiver's UTC when known, else `mono_ns + mono_to_wall_ns` (the agent's
        wall clock), else None is returned too.
        """
        if self.lat is None or self.lon is None or not self.fix.has_position:
            return None
        if self.time_utc_ns is not None:
            time_ns = self.time_utc_ns
        elif mono_to_wall_ns is not None:
            time_ns = self.mono_ns + mono_to_wall_ns
        else:
            return None
        return ProtocolGnssFix(
            time_ns=time_ns, lat_deg=self.lat, lon_deg=self.lon, alt_m=self.alt_m or 0.0,
            speed_kmh=self.speed_kmh or 0.0, heading_deg=self.course_deg or 0.0,
            hdop=self.hdop if self.hdop is not None else 99.0, sats=self.sats or 0,
            fix_type=self.fix.to_protocol(),
        )

    def as_json(self) -> dict[str, Any]:
        """The `lienwatch gnss parse` record: time, position, speed, course, fix, sats, hdop."""
        return {
            "time": self.iso_time(),
            "lat": _round(self.lat, 7),
            "lon": _round(self.lon, 7),
            "alt_m": _round(self.alt_m, 2),
            "speed_kmh": _round(self.speed_kmh, 3),
            "course_deg": _round(self.course_deg, 2),
            "fix": self.fix.label,
            "sats": self.sats,
            "hdop": self.hdop,
        }


def _within(value: float | None, bounds: tuple[float, float]) -> bool:
    return value is None or (math.isfinite(value) and bounds[0] <= value <= bounds[1])


def plausible(fix: GnssFix) -> frozenset[str]:
    """Null every value of `fix` outside its plausible range and return the names of those fields.

    The one validation of a fix, applied by the epoch assembler to every fix it completes, so the
    agent's source and `lienwatch gnss parse` see the same values. A fix whose position is not
    plausible (or missing) has no position: its type becomes NONE (never `3d` with `lat` null).
    """
    bad = set()
    for name, bounds in (("alt_m", ALT_M), ("speed_kmh", SPEED_KMH), ("course_deg", COURSE_DEG),
                         ("hdop", DOP), ("pdop", DOP), ("h_acc_m", H_ACC_M)):
        if not _within(getattr(fix, name), bounds):
            setattr(fix, name, None)
            bad.add(name)
    if fix.course_deg == 360.0:
        fix.course_deg = 0.0
    if fix.sats is not None and not 0 <= fix.sats <= MAX_SATS:
        fix.sats = None
        bad.add("sats")
    if not (_within(fix.lat, (-LAT_DEG, LAT_DEG)) and _within(fix.lon, (-LON_DEG, LON_DEG))):
        fix.lat = fix.lon = None
        bad.add("position")
    if fix.fix.has_position and (fix.lat is None or fix.lon is None):
        fix.fix = FixType.NONE
    if not fix.fix.has_position:
        fix.lat = fix.lon = fix.alt_m = None
    if fix.time_utc_ns is not None and not 0 <= fix.time_utc_ns <= MAX_TIME_NS:
        fix.time_utc_ns = None
        bad.add("time")
    return frozenset(bad)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # a non-finite one is kept for `plausible` to null and count


@dataclass
class _GsaState:
    """What an epoch's GSAs said, kept to be reused by epochs whose GSAs were throttled."""

    mode: int | None = None
    pdop: float | None = None
    hdop: float | None = None
    used: dict[str, int] = field(default_factory=dict)


class EpochAssembler:
    """Turns a stream of `Sentence`s into `GnssFix`es; `feed` returns the fixes it completed."""

    def __init__(self) -> None:
        self._fix: GnssFix | None = None
        self._date: dt.date | None = None
        self._gsv: dict[str, dict[int, float]] = {}
        self._gsa_mode: int | None = None
        self._rmc_mode: FixType | None = None
        self._gll_mode: FixType | None = None
        self._gga_quality: FixType | None = None
        self._kinds: set[str] = set()  # types parsed in this epoch
        self._throttled: set[str] = set()  # types sent in this epoch but not parsed
        self._gsa = _GsaState()
        self._gsv_in_view: dict[str, int] = {}
        # The last parsed values of the slow types, for epochs where they were throttled.
        self._last_gsa: _GsaState | None = None
        self._last_gsv: tuple[dict[str, dict[int, float]], dict[str, int]] | None = None
        self._last_gst: tuple[float | None] | None = None  # (h_acc_m,) once a GST was parsed
        self.epochs = 0
        self.implausible: Counter[str] = Counter()  # per field, fixes that had it nulled

    def feed(self, sentence: Sentence, mono_ns: int) -> list[GnssFix]:
        done: list[GnssFix] = []
        time_of_day = sentence.get("time") if sentence.kind in _TIMED else None
        current = self._fix
        if current is not None and (
            (isinstance(time_of_day, dt.time) and current.time_of_day not in (None, time_of_day))
            or (sentence.kind in _POSITIONS and sentence.kind in self._kinds)
        ):
            done.append(self._close())
        if isinstance(time_of_day, dt.time):
            if self._fix is None:
                self._fix = GnssFix(mono_ns=mono_ns, time_of_day=time_of_day)
            elif self._fix.time_of_day is None:
                self._fix.time_of_day = time_of_day
        elif self._fix is None:
            self._fix = GnssFix(mono_ns=mono_ns)
        fix = self._fix
        assert fix is not None
        fix.mono_ns = mono_ns
        if sentence.msg is None:  # throttled: sent, not parsed
            self._throttled.add(sentence.kind)
        else:
            self._kinds.add(sentence.kind)
            getattr(self, f"_on_{sentence.kind.lower()}")(fix, sentence)
        return done

    def flush(self) -> list[GnssFix]:
        """Close the epoch in progress (end of a log, or the receiver went quiet)."""
        if self._fix is None or (self._fix.time_of_day is None and not self._kinds & _POSITIONS):
            return []
        return [self._close()]

    def _close(self) -> GnssFix:
        fix = self._fix
        assert fix is not None
        self._fix = None
        self._remember_or_reuse(fix)
        if self._gga_quality is not None:
            kind = self._gga_quality
            if kind is FixType.FIX_3D and self._gsa_mode == 2:
                kind = FixType.FIX_2D
            fix.fix = kind
        elif self._rmc_mode is not None:
            kind = self._rmc_mode
            if kind is FixType.FIX_3D and self._gsa_mode == 2:
                kind = FixType.FIX_2D
            fix.fix = kind
        elif self._gll_mode is not None:  # an epoch with a position only in GLL
            kind = self._gll_mode
            if kind is FixType.FIX_3D and self._gsa_mode == 2:
                kind = FixType.FIX_2D
            fix.fix = kind
        for name, cn0 in self._gsv.items():
            entry = fix.constellations.setdefault(name, Constellation())
            entry.cn0_dbhz = cn0
            entry.in_view = max(entry.in_view, len(cn0))
        if self._date is not None and fix.time_of_day is not None:
            t = fix.time_of_day
            stamp = dt.datetime.combine(self._date, t.replace(tzinfo=None), dt.UTC)
            fix.time_utc_ns = int(stamp.timestamp()) * 1_000_000_000 + t.microsecond * 1000
        fix.implausible = plausible(fix)
        self.implausible.update(fix.implausible)
        self._gsv = {}
        self._gsv_in_view = {}
        self._gsa = _GsaState()
        self._kinds = set()
        self._throttled = set()
        self._gsa_mode = self._rmc_mode = self._gll_mode = self._gga_quality = None
        self.epochs += 1
        return fix

    def _remember_or_reuse(self, fix: GnssFix) -> None:
        """Keep the values of the slow types parsed in this epoch; reuse them where throttled."""
        parsed, throttled, reused = self._kinds, self._throttled - self._kinds, set()
        if "GSA" in parsed:
            self._gsa.mode = self._gsa_mode
            self._last_gsa = self._gsa
        elif "GSA" in throttled and self._last_gsa is not None:
            last = self._last_gsa
            self._gsa_mode = last.mode
            fix.pdop = last.pdop
            if fix.hdop is None:
                fix.hdop = last.hdop
            for name, used in last.used.items():
                fix.constellations.setdefault(name, Constellation()).used = used
            reused.add("GSA")
        if "GSV" in parsed:  # copies: the fix hands its own dicts to whoever receives it
            self._last_gsv = ({name: dict(cn0) for name, cn0 in self._gsv.items()}, self._gsv_in_view)
        elif "GSV" in throttled and self._last_gsv is not None:
            cn0s, in_view = self._last_gsv
            self._gsv = {name: dict(cn0) for name, cn0 in cn0s.items()}
            for name, n in in_view.items():
                entry = fix.constellations.setdefault(name, Constellation())
                entry.in_view = max(entry.in_view, n)
            reused.add("GSV")
        if "GST" in parsed:
            self._last_gst = (fix.h_acc_m,)
        elif "GST" in throttled and self._last_gst is not None:
            (fix.h_acc_m,) = self._last_gst
            reused.add("GST")
        fix.reused = frozenset(reused)

    # --- per sentence ---------------------------------------------------------------------------

    def _on_gga(self, fix: GnssFix, s: Sentence) -> None:
        quality = s.get("quality")
        self._gga_quality = (
            _GGA_QUALITY.get(int(quality), FixType.NONE) if quality is not None else FixType.NONE
        )
        fix.lat, fix.lon = _float(s.get("lat")), _float(s.get("lon"))
        fix.alt_m = _float(s.get("alt"))
        sats = s.get("numSV")
        fix.sats = int(sats) if sats is not None else None
        fix.hdop = _float(s.get("HDOP"))

    def _on_rmc(self, fix: GnssFix, s: Sentence) -> None:
        date = s.get("date")
        if isinstance(date, dt.date):
            self._date = date
        if s.get("status") == "V":
            self._rmc_mode = FixType.NONE
        else:
            self._rmc_mode = _MODE.get(str(s.get("posMode") or "A"), FixType.FIX_3D)
        if fix.lat is None:
            fix.lat, fix.lon = _float(s.get("lat")), _float(s.get("lon"))
        speed = _float(s.get("spd"))
        if speed is not None:
            fix.speed_kmh = speed * KNOTS_TO_KMH
        course = _float(s.get("cog"))
        if course is not None:
            fix.course_deg = course

    def _on_gll(self, fix: GnssFix, s: Sentence) -> None:
        """GLL: position, time, status and mode; its position counts only where GGA/RMC gave none."""
        if s.get("status") == "V":
            self._gll_mode = FixType.NONE
            return
        self._gll_mode = _MODE.get(str(s.get("posMode") or "A"), FixType.FIX_3D)
        if fix.lat is None:
            fix.lat, fix.lon = _float(s.get("lat")), _float(s.get("lon"))

    def _on_vtg(self, fix: GnssFix, s: Sentence) -> None:
        speed = _float(s.get("sogk"))
        if speed is None:
            knots = _float(s.get("sogn"))
            speed = None if knots is None else knots * KNOTS_TO_KMH
        if speed is not None and fix.speed_kmh is None:
            fix.speed_kmh = speed
        course = _float(s.get("cogt"))
        if course is not None and fix.course_deg is None:
            fix.course_deg = course

    def _on_gsa(self, fix: GnssFix, s: Sentence) -> None:
        mode = s.get("navMode")
        if mode is not None:
            self._gsa_mode = int(mode)
        svids = [int(v) for i in range(1, 13) if (v := s.get(f"svid_{i:02d}")) is not None]
        system = s.get("systemId")
        gsa = self._gsa
        for svid in svids:
            if system is not None and int(system) in _SYSTEM_ID:
                name = _SYSTEM_ID[int(system)]
            elif s.talker != "GN":
                name = TALKER_CONSTELLATION.get(s.talker, "unknown")
            else:
                name = constellation_of_svid(svid)
            fix.constellations.setdefault(name, Constellation()).used += 1
            gsa.used[name] = gsa.used.get(name, 0) + 1
        fix.pdop = _float(s.get("PDOP")) if fix.pdop is None else fix.pdop
        gsa.pdop = fix.pdop
        if gsa.hdop is None:
            gsa.hdop = _float(s.get("HDOP"))
        if fix.hdop is None:
            fix.hdop = gsa.hdop

    def _on_gsv(self, fix: GnssFix, s: Sentence) -> None:
        name = TALKER_CONSTELLATION.get(s.talker, "unknown")
        sats = self._gsv.setdefault(name, {})
        for i in range(1, 5):
            svid = s.get(f"svid_{i:02d}")
            if svid is None:
                continue
            cn0 = _float(s.get(f"cno_{i:02d}"))
            if cn0 is not None and not CN0_DBHZ[0] <= cn0 <= CN0_DBHZ[1]:
                cn0 = None
            key = int(svid)
            sats[key] = max(sats.get(key, 0.0), cn0 or 0.0)  # several signals (L1/L5) per satellite
        total = s.get("numSV")
        if total is not None and 0 <= int(total) <= MAX_SATS:
            entry = fix.constellations.setdefault(name, Constellation())
            entry.in_view = max(entry.in_view, int(total))
            self._gsv_in_view[name] = max(self._gsv_in_view.get(name, 0), int(total))

    def _on_gst(self, fix: GnssFix, s: Sentence) -> None:
        lat_err, lon_err = _float(s.get("stdLat")), _float(s.get("stdLong"))
        if lat_err is not None and lon_err is not None:
            fix.h_acc_m = math.hypot(lat_err, lon_err)

    def _on_zda(self, fix: GnssFix, s: Sentence) -> None:
        day, month, year = s.get("day"), s.get("month"), s.get("year")
        try:
            if day is not None and month is not None and year is not None:
                self._date = dt.date(int(year), int(month), int(day))
        except ValueError:
            pass
