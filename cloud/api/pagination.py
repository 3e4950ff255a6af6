"""Opaque keyset cursors: the sort key of the last row of a page, base64url JSON.

A page answers `next_cursor` (None on the last page); passing it back as `cursor` continues after
that row, so pages stay stable while rows are added (no OFFSET). A cursor that does not decode
to what the endpoint expects is a 422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from cloud.api.problems import Problem
from cloud.api.times import EARLIEST, LATEST

MAX_CURSOR_CHARS = 512


def encode_cursor(*key: object) -> str:
    """A cursor after the row whose sort key is `key` (str, int, or datetime parts)."""
    parts = [value.isoformat() if isinstance(value, datetime) else value for value in key]
    return base64.urlsafe_b64encode(json.dumps(parts, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> tuple[Any, ...]:
    """The sort key in `cursor`, each part converted to `types` (str, int or datetime)."""

    def bad() -> Problem:
        return Problem(
            422,
            "Unprocessable Content",
            "cursor is not one this endpoint gave out (pass next_cursor back unchanged)",
            kind="invalid-cursor",
        )

    if len(cursor) > MAX_CURSOR_CHARS:
        raise bad()
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad() from None
    if not isinstance(parts, list) or len(parts) != len(types):
        raise bad()
    values: list[Any] = []
    for part, kind in zip(parts, types, strict=True):
        if kind is datetime:
            try:
                value: Any = datetime.fromisoformat(part)
            except (TypeError, ValueError):
                raise bad() from None
            if value.tzinfo is None or not EARLIEST <= value <= LATEST:
                raise bad()
        elif kind is int:
            if not isinstance(part, int) or isinstance(part, bool) or not -(2**63) <= part < 2**63:
                raise bad()
            value = part
        else:
            if not isinstance(part, str) or not part or len(part) > 128 or "\x00" in part:
                raise bad()
            value = part
        values.append(value)
    return tuple(values)
