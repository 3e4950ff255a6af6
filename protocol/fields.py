"""Field checks shared by the body codecs: each returns the value or raises InvalidFieldError.

Decoded CBOR is untrusted: these accept exactly the Python types cbor2 produces for the CDDL
type and nothing else (a bool is not an int here, a bignum out of range is refused).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from protocol.errors import InvalidFieldError, MalformedMessageError

DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def body_map(value: object, what: str) -> Mapping[Any, Any]:
    if type(value) is not dict:
        raise MalformedMessageError(f"{what} must be a CBOR map")
    return value


def array(value: object, what: str, min_len: int, max_len: int) -> list[Any]:
    if type(value) is not list or not min_len <= len(value) <= max_len:
        raise MalformedMessageError(f"{what} must be an array of {min_len}..{max_len} items")
    return value


def integer(value: object, what: str, lo: int, hi: int) -> int:
    """An integer in lo..hi (numpy integers are accepted when encoding, bools never)."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InvalidFieldError(f"{what} must be an integer in {lo}..{hi}, got {_show(value)}")
        value = int(value)
    if not lo <= value <= hi:
        raise InvalidFieldError(f"{what} must be an integer in {lo}..{hi}, got {_show(value)}")
    return value


def real(value: object, what: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite float (CBOR float or integer; numpy numbers when encoding) in lo..hi."""
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidFieldError(f"{what} must be a finite number in {lo}..{hi}, got {_show(value)}")
        if isinstance(value, numbers.Integral) and not -(2**53) <= int(value) <= 2**53:
            raise InvalidFieldError(f"{what} must be a finite number in {lo}..{hi}, got {_show(value)}")
        value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise InvalidFieldError(f"{what} must be a finite number in {lo}..{hi}, got {_show(value)}")
    return value


def text(value: object, what: str, max_len: int, *, min_len: int = 0) -> str:
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise InvalidFieldError(f"{what} must be a text string of {min_len}..{max_len} characters")
    if "\x00" in value:  # no store or log line can hold it (PostgreSQL text refuses U+0000)
        raise InvalidFieldError(f"{what} must not contain U+0000 (NUL)")
    return str(value)


def octets(value: object, what: str, size: int) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise InvalidFieldError(f"{what} must be a byte string of exactly {size} bytes")
    return value


def device_id(value: object, what: str = "device_id") -> str:
    if type(value) is not str or DEVICE_ID_RE.fullmatch(value) is None:
        raise InvalidFieldError(
            f"{what} must be 1..64 characters of A-Z a-z 0-9 . _ - (starting alphanumeric), "
            f"got {_show(value)}"
        )
    return value


def _show(value: object) -> str:
    if type(value) is int and value.bit_length() > 64:
        return "a huge integer"
    shown = repr(value) if not isinstance(value, bytes | str | list | dict) else type(value).__name__
    return shown if len(shown) <= 40 else shown[:37] + "..."
