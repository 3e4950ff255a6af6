"""`lienwatch wire`: inspect and build the payloads a gateway sends."""

from __future__ import annotations

import argparse

from lienwatch.cli import add_group, not_yet

_PROTOCOL = "issue: protocol wire format"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wire = add_group(commands, "wire", "Decode and encode lienwatch wire messages (CBOR).")
    decode = wire.add_parser("decode", help="Print a CBOR message as JSON.")
    decode.add_argument("file", help="payload file, or - for stdin")
    decode.add_argument("--hex", action="store_true", help="input is hex text, not raw bytes")
    decode.set_defaults(handler=not_yet(_PROTOCOL))
    encode = wire.add_parser("encode", help="Build a CBOR message from its JSON form.")
    encode.add_argument("file", help="JSON file, or - for stdin")
    encode.set_defaults(handler=not_yet(_PROTOCOL))
