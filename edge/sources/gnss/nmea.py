"""NMEA 0183 lines → parsed sentences, with every rejected line counted by reason.

Parsing is pynmeagps (after this module has verified the checksum); this module decides what to hand
it and what to count. Accepted: talkers GP (GPS), GL (GLONASS), GA (Galileo), GB/BD (BeiDou),
GQ (QZSS), GI (NavIC), GN (combined) with sentences GGA, RMC, GSA, GSV, VTG, GST, ZDA. Rejected
lines are counted, never raised: `truncated` (no `*hh` checksum or cut short), `checksum`
(mismatch), `proprietary` ($P...), `unknown` (other talker or sentence), `corrupt` (anything
pynmeagps refuses or a field that does not parse). With a `SlowSentenceThrottle`, a valid line of a
slow type the throttle does not want is not parsed: it comes back as a `Sentence` without a message
(so the epoch assembler knows it was sent) and is counted in `NmeaStats.throttled`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pynmeagps
from pynmeagps import NMEAReader

from edge.sources.gnss.throttle import SlowSentenceThrottle

TALKERS = frozenset({"GP", "GL", "GA", "GB", "BD", "GQ", "GI", "GN"})
SENTENCES = frozenset({"GGA", "RMC", "GSA", "GSV", "VTG", "GST", "ZDA"})
MAX_LINE = 120  # NMEA 0183 allows 82 characters; NMEA 4.x receivers with long GSV stay well below this

_SHAPE = re.compile(rb"^\$([A-Z0-9]{2,})(,[\x20-\x7E]*)?\*([0-9A-Fa-f]{2})$")


@dataclass
class NmeaStats:
    """Counters of lines seen, accepted (parsed, by type in `parsed`), throttled (valid, not parsed,
    by type) and rejected by reason. `skipped` is the rejected lines, as before throttling existed."""

    lines: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    parsed: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        return sum(self.rejected.values())

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.rejected.items())) or "none"
        throttled = sum(self.throttled.values())
        not_parsed = f", {throttled} slow sentences not parsed" if throttled else ""
        return f"{self.lines} lines: {self.accepted} accepted{not_parsed}, {self.skipped} skipped ({reasons})"


@dataclass(frozen=True, slots=True)
class Sentence:
    """One accepted sentence: talker (`GN`), type (`GGA`) and pynmeagps's parsed message, which is
    None when a `SlowSentenceThrottle` kept the line from being parsed (`get` then gives None)."""

    talker: str
    kind: str
    msg: Any

    @property
    def parsed(self) -> bool:
        return self.msg is not None

    def get(self, name: str) -> Any:
        """A field, or None when it is empty or absent (pynmeagps gives '' for empty fields)."""
        value = getattr(self.msg, name, None)
        return None if value == "" else value


class NmeaParser:
    """Feeds lines (bytes, without or with CR/LF) and returns accepted `Sentence`s or None.

    With a `throttle`, valid lines it does not admit come back unparsed (`Sentence.parsed` False).
    """

    def __init__(self, throttle: SlowSentenceThrottle | None = None) -> None:
        self.stats = NmeaStats()
        self.throttle = throttle

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
        throttle = self.throttle
        if throttle is not None and not throttle.admit(kind):
            self.stats.throttled[kind] += 1
            return Sentence(talker, kind, None)
        try:
            # The checksum was verified above; pynmeagps checking it again cost ~10 % of the parse.
            msg = NMEAReader.parse(line + b"\r\n", validate=pynmeagps.VALNONE)
        except Exception:  # pynmeagps raises several types (and ValueError) on bad fields
            return self._reject("corrupt")
        if msg is None:
            return self._reject("corrupt")
        self.stats.accepted += 1
        self.stats.parsed[kind] += 1
        if throttle is not None:
            throttle.observe(kind, msg)
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
