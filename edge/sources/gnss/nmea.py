"""NMEA 0183 lines → parsed sentences, with every rejected piece counted by reason.

Fields are decoded by `fields.py` after this module has verified shape and checksum (pynmeagps is
the decoder's test oracle); this module decides what to decode and what to count. Accepted:
talkers GP (GPS), GL (GLONASS), GA (Galileo), GB/BD (BeiDou), GQ (QZSS), GI (NavIC), GN (combined)
with sentences GGA, RMC, GSA, GSV, VTG, GST, ZDA. Rejected pieces are counted, never raised:
`truncated` (no `*hh` checksum or cut short), `checksum` (mismatch), `proprietary` ($P...),
`unknown` (other talker or sentence), `corrupt` (a field that does not parse, a sentence longer
than `MAX_LINE`, a line longer than `MAX_LINE_BYTES`, noise without a `$`). With a
`SlowSentenceThrottle`, a valid sentence of a slow type the throttle does not want is not parsed:
it comes back as a `Sentence` without a message (so the epoch assembler knows it was sent) and
is counted in `NmeaStats.throttled`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edge.sources.gnss.fields import Fields, decode
from edge.sources.gnss.throttle import SlowSentenceThrottle

TALKERS = frozenset({"GP", "GL", "GA", "GB", "BD", "GQ", "GI", "GN"})
SENTENCES = frozenset({"GGA", "RMC", "GLL", "GSA", "GSV", "VTG", "GST", "ZDA"})
MAX_LINE = 120  # NMEA 0183 allows 82 characters; NMEA 4.x receivers with long GSV stay well below this
MAX_LINE_BYTES = 4096  # a longer line is one corrupt line (= LineSplitter's bound in source.py)

_SHAPE = re.compile(rb"^\$([A-Z0-9]{2,})(,[\x20-\x7E]*)?\*([0-9A-Fa-f]{2})$")


@dataclass
class NmeaStats:
    """Counters of lines seen, and of their pieces (a sentence, or a fragment before one): accepted
    (parsed, by type in `parsed`), throttled (valid, not parsed, by type) and rejected by reason.
    `pieces == accepted + sum(throttled) + skipped`; `skipped` is the rejected pieces."""

    lines: int = 0
    pieces: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    parsed: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        return sum(self.rejected.values())

    def summary(self) -> str:
        """`N lines[ (M sentences)]: A accepted[, T ... not parsed], S skipped (by reason)`; the
        parts add up to M (= N unless a line held several sentences or noise before one)."""
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.rejected.items())) or "none"
        throttled = sum(self.throttled.values())
        not_parsed = f", {throttled} slow sentences not parsed" if throttled else ""
        pieces = f" ({self.pieces} sentences and fragments)" if self.pieces != self.lines else ""
        return (f"{self.lines} lines{pieces}: {self.accepted} accepted{not_parsed}, "
                f"{self.skipped} skipped ({reasons})")


@dataclass(frozen=True, slots=True)
class Sentence:
    """One accepted sentence: talker (`GN`), type (`GGA`) and its decoded fields (`fields.py`),
    None when a `SlowSentenceThrottle` kept the line from being parsed (`get` then gives None)."""

    talker: str
    kind: str
    msg: Fields | None

    @property
    def parsed(self) -> bool:
        return self.msg is not None

    def get(self, name: str) -> Any:
        """A field, or None when it is empty or absent."""
        return None if self.msg is None else self.msg.get(name)


class NmeaParser:
    """Feeds lines (bytes, without or with CR/LF) and returns the accepted `Sentence`s in them.

    A line is split at every `$`: a receiver that lost a line ending glues two sentences into one
    line, and both count. Noise before the first `$` is one `truncated` piece; a line without any
    `$`, or longer than `MAX_LINE_BYTES`, is one `corrupt` piece. So `stats.pieces` (sentences and
    fragments) is always `accepted + throttled + skipped`. With a `throttle`, valid sentences it
    does not admit come back unparsed (`Sentence.parsed` False).
    """

    def __init__(self, throttle: SlowSentenceThrottle | None = None, *,
                 undecoded: frozenset[str] = frozenset()) -> None:
        self.stats = NmeaStats()
        self.throttle = throttle
        self.undecoded = undecoded  # types checked and counted but never decoded (as if throttled)

    def parse_line(self, raw: bytes) -> Sentence | None:
        """The last sentence of a line (for lines that hold one), or None."""
        found = self.sentences(raw)
        return found[-1] if found else None

    def sentences(self, raw: bytes) -> list[Sentence]:
        """Every accepted sentence of one line."""
        line = raw.strip(b"\r\n\x00 ")
        if not line:
            return []
        stats = self.stats
        stats.lines += 1
        if len(line) > MAX_LINE_BYTES:
            self._reject("corrupt")
            return []
        head, *sentences = line.split(b"$")
        if head.strip(b"\x00 "):  # noise, or the tail of a sentence cut off before this line
            self._reject("truncated" if sentences else "corrupt")
        found = []
        for text in sentences:
            sentence = self._parse(b"$" + text.rstrip(b"\x00 "))
            if sentence is not None:
                found.append(sentence)
        return found

    def _parse(self, line: bytes) -> Sentence | None:
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
        if xor_checksum(line[1:-3]) != int(match.group(3), 16):
            return self._reject("checksum")
        stats = self.stats
        throttle = self.throttle
        if kind in self.undecoded or (throttle is not None and not throttle.admit(kind)):
            stats.pieces += 1
            stats.throttled[kind] += 1
            return Sentence(talker, kind, None)
        try:
            msg = decode(kind, (match.group(2) or b",")[1:].decode("ascii"))
        except ValueError:  # a number field that is not a number
            return self._reject("corrupt")
        stats.pieces += 1
        stats.accepted += 1
        stats.parsed[kind] += 1
        if throttle is not None:
            throttle.observe(kind, msg)
        return Sentence(talker, kind, msg)

    def _reject(self, reason: str) -> Sentence | None:
        self.stats.pieces += 1
        self.stats.rejected[reason] += 1
        return None


def xor_checksum(data: bytes) -> int:
    """The XOR of all bytes: folded as one integer (a few big-int operations instead of a Python
    loop per byte, which was a tenth of the parse)."""
    value, width = int.from_bytes(data, "little"), len(data)
    while width > 1:
        half = (width + 1) // 2
        value = (value & ((1 << 8 * half) - 1)) ^ (value >> 8 * half)
        width = half
    return value


def nmea_checksum(body: str) -> str:
    """The two hex digits of the XOR checksum of a sentence body (between `$` and `*`)."""
    return f"{xor_checksum(body.encode('ascii')):02X}"


def make_sentence(body: str) -> str:
    """`GNGGA,...` → `$GNGGA,...*hh` (no line ending)."""
    return f"${body}*{nmea_checksum(body)}"
