"""Handlers of `lienwatch wire decode|encode` (loaded lazily by protocol/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocol.errors import InputError, MalformedMessageError


def _read(name: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
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

    data = _read(args.file)
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

    data = encode_message(jsonform.loads(_read(args.file)), deflate=args.deflate)
    _write(args.output, (data.hex() + "\n").encode() if args.hex else data)
    return 0
