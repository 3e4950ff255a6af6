"""NMEA 0183 lines → parsed sentences, with every rejected line counted by reason.

Parsing is pynmeagps (checksums verified with VALCKSUM); this module only decides what to hand
it and what to count. Accepted: talkers GP (GPS), GL (GLONASS), GA (Galileo), GB/BD (BeiDou),
GQ (QZSS), GI (NavIC), GN (combined) with sentences GGA, RMC, GSA, GSV, VTG, GST, ZDA. Rejected
lines are counted, never raised: `truncated` (no `*hh` checksum or cut short), `checksum`
(mismatch), `proprietary` ($P...), `unknown` (other talker or sentence), `corrupt` (anything
pynmeagps refuses or a field that does not parse).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pynmeagps
from pynmeagps import NMEAReader

TALKERS = frozenset({"GP", "GL", "GA", "GB", "BD", "GQ", "GI", "GN"})
SENTENCES = frozenset({"GGA", "RMC", "GSA", "GSV", "VTG", "GST", "ZDA"})
MAX_LINE = 120  # NMEA 0183 allows 82 characters; NMEA 4.x receivers with long GSV stay well below this

_SHAPE = re.compile(rb"^\$([A-Z0-9]{2,})(,[\x20-\x7E]*)?\*([0-9A-Fa-f]{2})$")


@dataclass
class NmeaStats:
    """Counters of lines seen, accepted and rejected by reason."""

    lines: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        return sum(self.rejected.values())

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.rejected.items())) or "none"
        return f"{self.lines} lines: {self.accepted} accepted, {self.skipped} skipped ({reasons})"


@dataclass(frozen=True, slots=True)
class Sentence:
    """One accepted sentence: talker (`GN`), type (`GGA`) and pynmeagps's parsed message."""

    talker: str
    kind: str
    msg: Any

    def get(self, name: str) -> Any:
        """A field, or None when it is empty or absent (pynmeagps gives '' for empty fields)."""
        value = getattr(self.msg, name, None)
        return None if value == "" else value


class NmeaParser:
    """Feeds lines (bytes, without or with CR/LF) and returns accepted `Sentence`s or None."""

    def __init__(self) -> None:
        self.stats = NmeaStats()

    def parse_line(self, raw: bytes) -> Sentence | None:
        line = raw.strip(b"\r\n\x00 ")
        if not line:
            return None
        self.stats.lines += 1
        start = line.rfind(b"$")  # a line that begins with noise (a cut-off sentence) keeps its tail
        if start < 0:
            return self._reject("corrupt")
        if start > 0:
            self.stats.rejected["truncated"] += 1
            line = line[start:]
        if len(line) > MAX_LINE:
            return self._reject("corrupt")
        match = _SHAPE.match(line)
        if match is None:
            return self._reject("truncated" if b"*" not in line[-3:] else "corrupt")
        address = match.group(1).decode("ascii")
        if address.startswith("P"):
            return self._reject("proprietary")
        talker, kind = address[:2], address[2:]
        if talker not in TALKERS or kind not in SENTENCES:
            return self._reject("unknown")
        body = match.group(0)[1:-3]
        checksum = 0
        for byte in body:
            checksum ^= byte
        if checksum != int(match.group(3), 16):
            return self._reject("checksum")
        try:
            # The checksum was verified above; pynmeagps checking it again cost ~10 % of the parse.
            msg = NMEAReader.parse(line + b"\r\n", validate=pynmeagps.VALNONE)
        except Exception:  # pynmeagps raises several types (and ValueError) on bad fields
            return self._reject("corrupt")
        if msg is None:
            return self._reject("corrupt")
        self.stats.accepted += 1
        return Sentence(talker, kind, msg)

    def _reject(self, reason: str) -> Sentence | None:
        self.stats.rejected[reason] += 1
        return None


def nmea_checksum(body: str) -> str:
    """The two hex digits of the XOR checksum of a sentence body (between `$` and `*`)."""
    value = 0
    for byte in body.encode("ascii"):
        value ^= byte
    return f"{value:02X}"


def make_sentence(body: str) -> str:
    """`GNGGA,...` → `$GNGGA,...*hh` (no line ending)."""
    return f"${body}*{nmea_checksum(body)}"
