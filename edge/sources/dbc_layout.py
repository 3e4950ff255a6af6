"""DBC messages compiled to bit layouts, and a decoder that reads them without cantools.

cantools parses the DBC (`compile_dbc`); what the agent keeps is, per message, each signal's bit
position, length, byte order, sign, IEEE-float flag, factor, offset and multiplexer condition
(`FrameLayout`). Decoding a frame is then a shift and a mask per signal on one integer.

Why by hand: decoding is the agent's hottest path (2,000 passive frames/s), where cantools'
generic decode costs ~3x these few integer operations, and cantools itself is ~3.7 MB of the
agent's resident memory. So the agent compiles the DBC in a short-lived child process
(`compile_dbc_isolated`: `python -m edge.sources.dbc_layout FILE` prints the layouts as JSON) and
never imports cantools. Decoding follows cantools' `Message.decode(data, decode_choices=False)`
with `allow_excess=False` exactly (a property test holds them equal): a frame shorter or longer
than the message is refused (cantools' default `allow_excess=True` would cut a longer one to the
message length and decode bytes of some other layout); values are `raw * factor + offset` (the
raw integer itself when the factor is 1 and the offset 0); a multiplexer value the DBC does not
list refuses the frame; signals of other multiplexer values are absent.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lienwatch.errors import ConfigError

COMPILE_TIMEOUT_S = 60.0


class FrameDecodeError(ValueError):
    """A frame that does not decode with its message's layout (a length other than the
    message's, an unknown multiplexer id)."""


@dataclass(frozen=True, slots=True)
class SignalLayout:
    """Where one DBC signal sits in the payload and how its raw value scales.

    `start` is the DBC start bit (Intel: least significant bit; Motorola: most significant bit,
    DBC "sawtooth" numbering). `mux_signal`/`mux_ids`: the signal is present only when that
    multiplexer signal's raw value is one of `mux_ids` (None: always present).
    """

    name: str
    start: int
    length: int
    little_endian: bool
    signed: bool
    is_float: bool
    factor: int | float
    offset: int | float
    mux_signal: str | None = None
    mux_ids: tuple[int, ...] | None = None

    def bits(self) -> int:
        """The payload bits this signal reads, as a mask over int.from_bytes(data, "little")."""
        return signal_bits(self.start, self.length, "little_endian" if self.little_endian else "big_endian")


@dataclass(frozen=True, slots=True)
class FrameLayout:
    """One DBC message: id, payload length and its signals' layouts."""

    name: str
    frame_id: int
    extended: bool
    length: int
    signals: tuple[SignalLayout, ...]
    multiplexers: tuple[str, ...] = ()  # names of the signals that select others

    @property
    def multiplexed(self) -> bool:
        return any(s.mux_signal is not None for s in self.signals)

    def decoder(self, names: Iterable[str]) -> FrameDecoder:
        """A decoder for the named signals (and the multiplexers they depend on)."""
        return FrameDecoder(self, names)


def signal_bits(start: int, length: int, byte_order: str) -> int:
    """The payload bits of one DBC signal as a mask over int.from_bytes(data, "little").

    Intel (little-endian) signals occupy bits start..start+length-1. Motorola (big-endian) ones
    start at their most significant bit and run down within a byte, then on to the next byte's
    bit 7 (DBC "sawtooth" numbering, where bit n is bit n % 8 of byte n // 8).
    """
    if byte_order == "little_endian":
        return ((1 << length) - 1) << start
    mask, position = 0, start
    for _ in range(length):
        mask |= 1 << position
        position = position + 15 if position % 8 == 0 else position - 1
    return mask


# One compiled signal: (name, little endian, shift, mask, sign bit or 0, float format or "",
# factor, offset, identity conversion, multiplexer name or None, the ids that select it).
_Step = tuple[str, bool, int, int, int, str, "int | float", "int | float", bool, "str | None", frozenset[int]]


class FrameDecoder:
    """Decodes chosen signals of one message from payload bytes.

    Besides the chosen signals it decodes every multiplexer of the message (a frame whose
    multiplexer value the DBC does not list is refused whole, as cantools does), each before
    the signals it selects. `decode` returns {signal name: value} for the present signals.
    """

    __slots__ = ("_listed", "_steps", "length")

    def __init__(self, layout: FrameLayout, names: Iterable[str]) -> None:
        self.length = layout.length
        by_name = {s.name: s for s in layout.signals}
        wanted: list[SignalLayout] = []

        def need(name: str) -> None:
            signal = by_name[name]
            if signal.mux_signal is not None:
                need(signal.mux_signal)
            if signal not in wanted:
                wanted.append(signal)

        for name in (*layout.multiplexers, *names):
            need(name)
        self._listed: dict[str, frozenset[int]] = {name: frozenset() for name in layout.multiplexers}
        for signal in layout.signals:
            if signal.mux_signal is not None:
                self._listed[signal.mux_signal] |= frozenset(signal.mux_ids or ())
        # A multiplexer that selects no signal selects nothing to refuse (cantools agrees).
        self._listed = {name: ids for name, ids in self._listed.items() if ids}
        total_bits = 8 * layout.length
        steps: list[_Step] = []
        for signal in wanted:
            if signal.little_endian:
                shift = signal.start
            else:  # big-endian bit position of the LSB, counted from the end of the payload
                msb = 8 * (signal.start // 8) + 7 - signal.start % 8
                shift = total_bits - (msb + signal.length)
            float_format = ("<f" if signal.length == 32 else "<d") if signal.is_float else ""
            steps.append((
                signal.name, signal.little_endian, shift, (1 << signal.length) - 1,
                1 << (signal.length - 1) if signal.signed and not signal.is_float else 0,
                float_format, signal.factor, signal.offset,
                type(signal.factor) is int and signal.factor == 1 and signal.offset == 0,
                signal.mux_signal, frozenset(signal.mux_ids or ()),
            ))
        self._steps = tuple(steps)

    def decode(self, data: bytes | bytearray) -> dict[str, int | float]:
        length = self.length
        if len(data) != length:  # a DLC that does not match the DBC message is garbage, not a prefix
            raise FrameDecodeError(f"wrong data size: {len(data)} instead of {length} bytes")
        little = int.from_bytes(data, "little")
        big = int.from_bytes(data, "big")
        out: dict[str, int | float] = {}
        for name, is_little, shift, mask, sign, float_fmt, factor, offset, identity, mux, ids in self._steps:
            if mux is not None:
                selector = out.get(mux)
                if selector is None or int(selector) not in ids:
                    continue
            bits = ((little if is_little else big) >> shift) & mask
            raw: int | float = bits
            if sign and bits & sign:
                raw = bits - (sign << 1)
            elif float_fmt:
                raw = struct.unpack(float_fmt, bits.to_bytes(mask.bit_length() // 8, "little"))[0]
            value = raw if identity else raw * factor + offset
            if name in self._listed and int(value) not in self._listed[name]:
                raise FrameDecodeError(f"multiplexer {name} = {value} is not listed in the DBC")
            out[name] = value
        return out


# --------------------------------------------------------------------------------- compiling


def compile_dbc(path: str | Path) -> dict[str, FrameLayout]:
    """Every message of a DBC as a layout, by message name (imports and uses cantools)."""
    import cantools

    path = Path(path)
    try:
        db: Any = cantools.database.load_file(str(path), database_format="dbc")
    except OSError as error:
        raise ConfigError(f"cannot read DBC {path}: {error.strerror}") from None
    except Exception as error:  # cantools raises its own ParseError and others on a broken DBC
        raise ConfigError(f"DBC {path} does not parse: {error}") from None
    return {message.name: _compile_message(message, path) for message in db.messages}


def _compile_message(message: Any, path: Path) -> FrameLayout:
    signals = []
    for signal in message.signals:
        if signal.conversion.is_float and signal.length not in (32, 64):
            raise ConfigError(f"DBC {path}: float signal {message.name}.{signal.name} must be 32 or 64 bits")
        mux_ids = signal.multiplexer_ids
        signals.append(SignalLayout(
            name=signal.name, start=signal.start, length=signal.length,
            little_endian=signal.byte_order == "little_endian", signed=bool(signal.is_signed),
            is_float=bool(signal.conversion.is_float), factor=signal.conversion.scale,
            offset=signal.conversion.offset,
            mux_signal=signal.multiplexer_signal if mux_ids is not None else None,
            mux_ids=tuple(int(i) for i in mux_ids) if mux_ids is not None else None,
        ))
    return FrameLayout(
        name=message.name, frame_id=int(message.frame_id), extended=bool(message.is_extended_frame),
        length=int(message.length), signals=tuple(signals),
        multiplexers=tuple(s.name for s in message.signals if s.is_multiplexer),
    )


def layouts_to_json(layouts: Mapping[str, FrameLayout]) -> str:
    return json.dumps([asdict(layout) for layout in layouts.values()], separators=(",", ":"))


def layouts_from_json(text: str) -> dict[str, FrameLayout]:
    out = {}
    for item in json.loads(text):
        signals = tuple(
            SignalLayout(**{**s, "mux_ids": tuple(s["mux_ids"]) if s["mux_ids"] is not None else None})
            for s in item["signals"]
        )
        layout = FrameLayout(**{**item, "signals": signals, "multiplexers": tuple(item["multiplexers"])})
        out[layout.name] = layout
    return out


def compile_dbc_isolated(path: str | Path) -> dict[str, FrameLayout]:
    """`compile_dbc` run in a child process, so that cantools never loads into this one."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        child = subprocess.run(
            [sys.executable, "-m", "edge.sources.dbc_layout", str(path)],
            capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, env=env, check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(f"compiling DBC {path} took longer than {COMPILE_TIMEOUT_S:.0f} s") from None
    if child.returncode == 2 and child.stderr.startswith("ConfigError: "):
        raise ConfigError(child.stderr.removeprefix("ConfigError: ").strip())
    if child.returncode != 0:
        raise ConfigError(f"compiling DBC {path} failed: {child.stderr.strip()[-500:]}")
    return layouts_from_json(child.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edge.sources.dbc_layout FILE.dbc`: the layouts as JSON on stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m edge.sources.dbc_layout FILE.dbc", file=sys.stderr)
        return 1
    try:
        text = layouts_to_json(compile_dbc(args[0]))
    except ConfigError as error:
        print(f"ConfigError: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
