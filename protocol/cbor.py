"""Hardened CBOR in and out: the only place that calls cbor2.

Decoding refuses every CBOR tag (lienwatch uses none; refusing them rules out bignums, shared
references and cyclic structures, dates and regular expressions), indefinite lengths, duplicate
map keys, nesting deeper than `MAX_DEPTH` and trailing bytes, and turns anything cbor2 raises
into `MalformedMessageError`. Encoding is deterministic (RFC 8949 §4.2: shortest forms, sorted
map keys), so equal messages give equal bytes.
"""

from __future__ import annotations

import secrets
from typing import Any, NoReturn

import cbor2

from protocol.errors import MalformedMessageError, PayloadTooLargeError
from protocol.limits import MAX_DEPTH, MAX_MESSAGE_BYTES


class _TagRefused(Exception):
    pass


def _refuse(*_: object) -> NoReturn:
    raise _TagRefused


# Every tag cbor2 would otherwise interpret (RFC 8949 and the IANA registry entries it knows).
_KNOWN_TAGS = (*range(0, 64), 100, 256, 258, 260, 261, 262, 263, 1001, 1002, 1003, 1004, 55799)
_REFUSE_ALL: dict[int, Any] = dict.fromkeys(_KNOWN_TAGS, _refuse)


# cbor2.loads ignores bytes after the first item. To refuse them without the slower stream
# decoder, the payload is decoded as the first element of `[payload, SENTINEL]`: if anything
# follows the payload's item, the second element is not the sentinel (a random 64-bit number
# the sender cannot know) or the decode fails.
_SENTINEL = secrets.randbits(64)
_SENTINEL_CBOR = b"\x1b" + _SENTINEL.to_bytes(8, "big")


def loads(data: bytes, what: str = "message") -> Any:
    """One CBOR data item that fills `data` exactly; MalformedMessageError otherwise."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise PayloadTooLargeError(f"{what} is {len(data)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    try:
        pair = cbor2.loads(
            b"\x82" + data + _SENTINEL_CBOR, tag_hook=_refuse, semantic_decoders=_REFUSE_ALL,
            max_depth=MAX_DEPTH + 1, allow_indefinite=False, allow_duplicate_keys=False,
        )
    except Exception as error:  # cbor2 raises CBORDecodeError, but also ValueError, OverflowError, ...
        raise MalformedMessageError(f"{what} is not valid lienwatch CBOR: {_reason(error)}") from None
    if type(pair) is not list or len(pair) != 2 or pair[1] != _SENTINEL or type(pair[1]) is not int:
        raise MalformedMessageError(f"{what} has bytes after its CBOR item (or is truncated)")
    return pair[0]


def dumps(value: Any) -> bytes:
    """Deterministic CBOR of plain values (ints, floats, str, bytes, lists, int-keyed dicts)."""
    return cbor2.dumps(value, canonical=True)


def _reason(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    if isinstance(cause, _TagRefused) or isinstance(error, _TagRefused) or "semantic tag" in str(error):
        return "CBOR tags are not used by lienwatch"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]
