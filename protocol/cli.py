"""`lienwatch wire`: inspect and build the payloads a gateway sends."""

from __future__ import annotations

import argparse

from lienwatch.cli import add_group, lazy


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wire = add_group(commands, "wire", "Decode and encode lienwatch wire messages (CBOR).")
    decode = wire.add_parser(
        "decode", help="Print a CBOR message as JSON.",
        description="Print a lienwatch message as JSON. A payload that is not a valid message exits "
                    "with code 2 and one line saying why.")
    decode.add_argument("file", help="payload file, or - for stdin")
    decode.add_argument("--hex", action="store_true", help="input is hex text, not raw bytes")
    decode.set_defaults(handler=lazy("protocol.cli_handlers:decode"))
    encode = wire.add_parser(
        "encode", help="Build a CBOR message from its JSON form.",
        description="Encode a message given in the JSON form that `lienwatch wire decode` prints.")
    encode.add_argument("file", help="JSON file, or - for stdin")
    encode.add_argument("-o", "--output", metavar="FILE", help="write the payload here (default: stdout)")
    encode.add_argument("--hex", action="store_true", help="write hex text instead of raw bytes")
    encode.add_argument("--deflate", action="store_true", help="deflate a telemetry batch's columns")
    encode.set_defaults(handler=lazy("protocol.cli_handlers:encode"))
