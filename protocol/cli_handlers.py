"""Handlers of `lienwatch wire decode|encode` (loaded lazily by protocol/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocol.errors import InputError, MalformedMessageError, PayloadTooLargeError
from protocol.limits import MAX_MESSAGE_BYTES

MAX_JSON_BYTES = 64 * 1024 * 1024


def _read(name: str, limit: int) -> bytes:
    """At most `limit` + 1 bytes of a file or stdin (a longer input is refused, not read whole)."""
    try:
        if name == "-":
            return sys.stdin.buffer.read(limit + 1)
        with Path(name).open("rb") as stream:
            return stream.read(limit + 1)
    except OSError as error:
        raise InputError(f"cannot read {name}: {error.strerror or error}") from None


def _write(name: str | None, data: bytes) -> None:
    if name is None or name == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        Path(name).write_bytes(data)
    except OSError as error:
        raise InputError(f"cannot write {name}: {error.strerror or error}") from None


def decode(args: argparse.Namespace) -> int:
    """Print the message in a payload file (raw CBOR, or hex text with --hex) as JSON."""
    from protocol import decode as decode_message
    from protocol import jsonform

    limit = 3 * MAX_MESSAGE_BYTES + 1024 if args.hex else MAX_MESSAGE_BYTES  # hex: 2 digits + spacing
    data = _read(args.file, limit)
    if len(data) > limit:
        raise PayloadTooLargeError(
            f"{args.file} is larger than any lienwatch message ({MAX_MESSAGE_BYTES} bytes)")
    if args.hex:
        try:
            data = bytes.fromhex(data.decode("ascii").strip().removeprefix("0x"))
        except (UnicodeDecodeError, ValueError):
            raise MalformedMessageError("--hex input is not hex text") from None
    sys.stdout.write(jsonform.dumps(decode_message(data)))
    return 0


def encode(args: argparse.Namespace) -> int:
    """Write the CBOR payload of a JSON message (as `wire decode` prints it)."""
    from protocol import encode as encode_message
    from protocol import jsonform

    text = _read(args.file, MAX_JSON_BYTES)
    if len(text) > MAX_JSON_BYTES:
        raise PayloadTooLargeError(f"{args.file} is larger than {MAX_JSON_BYTES} bytes of JSON")
    data = encode_message(jsonform.loads(text), deflate=args.deflate)
    _write(args.output, (data.hex() + "\n").encode() if args.hex else data)
    return 0
