"""Hardened CBOR in and out: the only place that calls cbor2.

Decoding refuses every CBOR tag (lienwatch uses none; refusing them rules out bignums, shared
references and cyclic structures, dates and regular expressions), indefinite lengths, duplicate
map keys, nesting deeper than `MAX_DEPTH` and trailing bytes, and turns anything cbor2 raises
into `MalformedMessageError`. Encoding is deterministic (RFC 8949 §4.2: shortest forms, sorted
map keys), so equal messages give equal bytes.
"""

from __future__ import annotations

import io
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


def loads(data: bytes, what: str = "message") -> Any:
    """One CBOR data item that fills `data` exactly; MalformedMessageError otherwise."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise PayloadTooLargeError(f"{what} is {len(data)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            stream, tag_hook=_refuse, semantic_decoders=_REFUSE_ALL, max_depth=MAX_DEPTH,
            allow_indefinite=False, allow_duplicate_keys=False,
        )
        value = decoder.decode()
    except Exception as error:  # cbor2 raises CBORDecodeError, but also ValueError, OverflowError, ...
        raise MalformedMessageError(f"{what} is not valid lienwatch CBOR: {_reason(error)}") from None
    if stream.tell() != len(data):
        raise MalformedMessageError(f"{what} has {len(data) - stream.tell()} bytes after the CBOR item")
    return value


def dumps(value: Any) -> bytes:
    """Deterministic CBOR of plain values (ints, floats, str, bytes, lists, int-keyed dicts)."""
    return cbor2.dumps(value, canonical=True)


def _reason(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    if isinstance(cause, _TagRefused) or isinstance(error, _TagRefused) or "semantic tag" in str(error):
        return "CBOR tags are not used by lienwatch"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]
