"""Field decoding of the eight NMEA 0183 sentence types the GNSS source reads.

Hand-written on purpose: pynmeagps builds a message object through a generic per-field type
dispatch (`setattr` per field, `strptime` per time) that cost ~0.55 ms per sentence, three
quarters of `gnss parse` on a log (0.5 MB/s) and the bulk of the agent's GNSS thread, while the
assembler reads a dozen fields. These decoders split the body once and convert only those fields
(same names, types and rounding as pynmeagps, which stays the test oracle:
tests/edge_sources/test_gnss_fields.py). A field that is empty or absent is None; one that does
not convert (`1.2.3` where a number belongs) raises ValueError, which the parser counts as
`corrupt` — as pynmeagps's errors were.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

Fields = dict[str, object]
_FRACTION = re.compile(r"\.[0-9]{1,6}")


def _number(text: str) -> float | None:
    return float(text) if text else None


def _integer(text: str) -> int | None:
    return int(text) if text else None


def _hex(text: str) -> int | None:
    return int(text, 16) if text else None


def _time(text: str) -> dt.time | None:
    """hhmmss[.ss] → time; None if it is not a time of day (pynmeagps: "")."""
    if len(text) < 6 or not text[:6].isdigit() or (len(text) > 6 and not _FRACTION.fullmatch(text[6:])):
        return None
    hour, minute, second = int(text[:2]), int(text[2:4]), int(text[4:6])
    fraction = text[7:13]
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    if hour > 23 or minute > 59 or second > 59:
        return None
    return dt.time(hour, minute, second, micro)


def _date(text: str) -> dt.date | None:
    """ddmmyy → date (years 1969-2068, as strptime's %y); None if it is not a date."""
    if len(text) != 6 or not text.isdigit():
        return None
    year = int(text[4:6])
    try:
        return dt.date(year + (2000 if year < 69 else 1900), int(text[2:4]), int(text[:2]))
    except ValueError:
        return None


def _degrees(text: str) -> float | None:
    """(d)ddmm.mmmm → unsigned decimal degrees; None if malformed (pynmeagps: "")."""
    point = text.find(".")
    if point < 4:
        return None
    try:
        return round(abs(float(text[: point - 2])) + float(text[point - 2:]) / 60, 10)
    except ValueError:
        return None


def _text(text: str) -> str | None:
    return text or None


TM, LA, CH, DE, IN, HX, DT = _time, _degrees, _text, _number, _integer, _hex, _date  # pynmeagps codes
# Per type, the fields in order as (name, decoder), pynmeagps's names and types. Every numeric
# field is converted, read or not, so a garbled one makes the sentence corrupt as pynmeagps did.
_LAYOUT: dict[str, tuple[tuple[str, Callable[[str], object]], ...]] = {
    "GGA": (("time", TM), ("lat", LA), ("NS", CH), ("lon", LA), ("EW", CH), ("quality", IN), ("numSV", IN),
            ("HDOP", DE), ("alt", DE), ("altUnit", CH), ("sep", DE), ("sepUnit", CH), ("diffAge", DE),
            ("diffStation", IN)),
    "RMC": (("time", TM), ("status", CH), ("lat", LA), ("NS", CH), ("lon", LA), ("EW", CH), ("spd", DE),
            ("cog", DE), ("date", DT), ("mv", DE), ("mvEW", CH), ("posMode", CH), ("navStatus", CH)),
    "VTG": (("cogt", DE), ("cogtUnit", CH), ("cogm", DE), ("cogmUnit", CH), ("sogn", DE), ("sognUnit", CH),
            ("sogk", DE), ("sogkUnit", CH), ("posMode", CH)),
    "GSA": (("opMode", CH), ("navMode", IN), *((f"svid_{i:02d}", IN) for i in range(1, 13)), ("PDOP", DE),
            ("HDOP", DE), ("VDOP", DE), ("systemId", HX)),
    "GST": (("time", TM), ("rangeRms", DE), ("stdMajor", DE), ("stdMinor", DE), ("orient", DE),
            ("stdLat", DE), ("stdLong", DE), ("stdAlt", DE)),
    "GLL": (("lat", LA), ("NS", CH), ("lon", LA), ("EW", CH), ("time", TM), ("status", CH), ("posMode", CH)),
    "ZDA": (("time", TM), ("day", IN), ("month", IN), ("year", IN), ("ltzh", CH), ("ltzn", CH)),
}
_GSV_GROUP = (("svid", IN), ("elv", IN), ("az", IN), ("cno", IN))


def _gsv_layout(count: int) -> tuple[tuple[str, Callable[[str], object]], ...]:
    """GSV: three counts, then groups of four per satellite, then an optional signal id."""
    groups = (count - 3) // 4
    fields = [("numMsg", IN), ("msgNum", IN), ("numSV", IN)]
    fields += [(f"{name}_{g:02d}", conv) for g in range(1, groups + 1) for name, conv in _GSV_GROUP]
    return (*fields, *((("signalID", HX),) if (count - 3) % 4 else ()))


def decode(kind: str, body: str) -> Fields:
    """The fields of one sentence, from its body after the address (`092725.00,4717.1,N,...`)."""
    parts = body.split(",")
    layout = _gsv_layout(len(parts)) if kind == "GSV" else _LAYOUT[kind]
    out: Fields = {name: conv(text) for (name, conv), text in zip(layout, parts, strict=False)}
    lat, lon = out.get("lat"), out.get("lon")
    if isinstance(lat, float) and out.get("NS") == "S":
        out["lat"] = -lat
    if isinstance(lon, float) and out.get("EW") == "W":
        out["lon"] = -lon
    return out
