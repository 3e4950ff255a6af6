"""Emergency override codes: HOTP (RFC 4226) from a per-device secret, checked on the device offline.

The lender's back office and the device share a secret of 16..64 bytes (provisioned with the
device, never sent over the air). Code number n is `hotp(secret, n)`: 8 decimal digits, the RFC
4226 truncation of HMAC-SHA1(secret, n as 8 big-endian bytes). Codes are handed out in order;
the device accepts the next unused counter or up to `look_ahead` after it (codes issued but never
typed), and from then on only later ones, so every code works once. No clock and no coverage is
needed: a borrower in an underground car park can still release the starter.

The algorithm is exactly RFC 4226 HOTP (HMAC-SHA1, which HOTP specifies and which is not weakened
by SHA-1's collisions), so any standard HOTP generator produces the same codes.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from protocol.errors import ProtocolError

DIGITS = 8
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 64


class OverrideSecretError(ProtocolError):
    """An override secret that is missing, unreadable or of the wrong size."""


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    """The `digits`-digit code number `counter` (RFC 4226: HMAC-SHA1, dynamic truncation)."""
    if not 0 <= counter < 2**64:
        raise ValueError(f"an HOTP counter is 0..2**64-1, got {counter}")
    mac = hmac.new(secret, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset:offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def match_counter(secret: bytes, code: str, next_counter: int, look_ahead: int = 10) -> int | None:
    """The counter in next_counter .. next_counter+look_ahead-1 whose code is `code`, else None.

    Every candidate is compared in constant time; a code that is not 8 digits never matches.
    """
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    found: int | None = None
    for counter in range(next_counter, next_counter + look_ahead):
        if hmac.compare_digest(hotp(secret, counter), code) and found is None:
            found = counter
    return found


def load_secret(path: Path) -> bytes:
    """A device's override secret: a file of 32..128 hex digits (16..64 bytes)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise OverrideSecretError(f"cannot read the override secret {path}: {error}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise OverrideSecretError(f"{path}: the override secret must be hex digits") from None
    if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise OverrideSecretError(f"{path}: the override secret must be {MIN_SECRET_BYTES}.."
                                  f"{MAX_SECRET_BYTES} bytes, got {len(secret)}")
    return secret
