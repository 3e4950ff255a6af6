"""The dbc source's frame rules in plain Python: the C decoder's twin and its fallback.

`decode_frame` decodes one frame of a mapped message from its `FrameDecoder` (edge/sources/
dbc_layout.py); `cython_ext.canframe.ChangeDecoder` calls it for the messages it does not decode
itself (multiplexed ones, unsigned 64-bit integers, ranges that could overflow int64).
`ReferenceDecoder` is the whole of `DbcDecoder` (edge/sources/dbc.py) written out in Python —
decoding, the on-change rule with its refresh, the counters — which the tests hold the compiled
decoder equal to, frame for frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import can

from edge.sources.dbc_layout import FrameDecodeError, FrameDecoder, FrameLayout

# One manifest entry: (DBC signal, catalog id, enum map or None, scale, may be inf/NaN); only an
# IEEE-float signal is checked for inf or NaN.
Entry = tuple[str, int, "Mapping[int, float] | None", float, bool]


def decode_frame(
    decoder: FrameDecoder, entries: tuple[Entry, ...], data: bytes | bytearray
) -> tuple[list[tuple[int, float]], int, bool]:
    """(entry index, value) of the entries that decoded, how many were rejected (1 for a frame
    that does not decode at all), and whether the frame decoded."""
    try:
        raw = decoder.decode(data)
    except FrameDecodeError:
        return [], 1, False
    out: list[tuple[int, float]] = []
    rejected = 0
    for index, (signal, _signal_id, values, scale, maybe_not_finite) in enumerate(entries):
        value = raw.get(signal)
        if value is None:  # a multiplexed signal this frame does not carry
            rejected += 1
            continue
        if values is not None:
            mapped = values.get(int(value))
            if mapped is None:
                rejected += 1
                continue
            value = mapped
        value = float(value) * scale
        if maybe_not_finite and not math.isfinite(value):
            rejected += 1
            continue
        out.append((index, value))
    return out, rejected, True


def frame_entries(layout: FrameLayout, maps: tuple[object, ...]) -> tuple[Entry, ...]:
    """The `Entry`s of a message's manifest maps (edge.sources.dbc.SignalMap), in manifest order."""
    floats = {s.name for s in layout.signals if s.is_float}
    return tuple((m.signal, m.signal_id, m.values, m.scale, m.signal in floats)  # type: ignore[attr-defined]
                 for m in maps)


class _Frame:
    __slots__ = ("decoder", "entries", "key", "last", "length", "mask", "refresh_at_ns")

    def __init__(self, layout: FrameLayout, maps: tuple[object, ...], mask: int) -> None:
        self.entries = frame_entries(layout, maps)
        self.decoder = layout.decoder({entry[0] for entry in self.entries})
        self.mask = mask
        self.key: int | None = None  # mapped bits of the last cleanly decoded frame
        self.length = -1
        self.last: dict[int, float] = {}  # signal id → value last emitted
        self.refresh_at_ns = 0


class ReferenceDecoder:
    """`DbcDecoder` in Python: `decode`, `changes` and the counters, with the same meaning."""

    def __init__(self, layouts: Mapping[int, FrameLayout], by_frame: Mapping[int, tuple[object, ...]],
                 masks: Mapping[int, int], *, refresh_ns: int) -> None:
        self.refresh_ns = refresh_ns
        self.decoded = self.ignored = self.rejected = self.unchanged = 0
        self._frames = {frame_id: _Frame(layouts[frame_id], maps, masks[frame_id])
                        for frame_id, maps in by_frame.items()}

    def decode(self, msg: can.Message) -> list[tuple[int, float]]:
        frame = self._frames.get(msg.arbitration_id)
        if frame is None or msg.is_error_frame or msg.is_remote_frame:
            self.ignored += 1
            return []
        return self._decode(frame, msg.data)[0]

    def _decode(self, frame: _Frame, data: bytes | bytearray) -> tuple[list[tuple[int, float]], bool]:
        pairs, rejected, decoded = decode_frame(frame.decoder, frame.entries, data)
        self.rejected += rejected
        self.decoded += decoded
        return [(frame.entries[i][1], value) for i, value in pairs], rejected == 0

    def changes(self, msg: can.Message, mono_ns: int) -> list[tuple[int, float]]:
        frame = self._frames.get(msg.arbitration_id)
        if frame is None or msg.is_error_frame or msg.is_remote_frame:
            self.ignored += 1
            return []
        data = msg.data
        if not self.refresh_ns:
            return self._decode(frame, data)[0]
        key = int.from_bytes(data, "little") & frame.mask
        if key == frame.key and len(data) == frame.length:
            self.unchanged += 1
            if mono_ns < frame.refresh_at_ns:
                return []
            frame.refresh_at_ns = mono_ns + self.refresh_ns
            return list(frame.last.items())
        values, clean = self._decode(frame, data)
        frame.key, frame.length = (key, len(data)) if clean else (None, -1)
        last = frame.last
        if mono_ns >= frame.refresh_at_ns:
            if clean:
                frame.refresh_at_ns = mono_ns + self.refresh_ns
            out = values
        else:
            out = [(signal_id, value) for signal_id, value in values if last.get(signal_id) != value]
        last.update(values)
        return out
