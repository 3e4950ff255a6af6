"""atheris fuzz target: `protocol.decode` returns a message or raises ProtocolError, for any input.

Run it for as long as you like (the golden vectors make a good seed corpus):

    mkdir -p /tmp/corpus && cp protocol/vectors/*.cbor /tmp/corpus/
    .venv/bin/python tests/protocol/fuzz_decode.py /tmp/corpus -max_total_time=600

Any other exception, or a decoded message that does not survive encode → decode unchanged, is a
crash that libFuzzer reports with the input that caused it.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["protocol"]):
    import protocol
    from protocol.errors import InternalDecodeError
    from protocol.messages import TelemetryBatch


def test_one_input(data: bytes) -> None:
    try:
        message = protocol.decode(data)
    except InternalDecodeError:
        raise
    except protocol.ProtocolError:
        return
    if isinstance(message, TelemetryBatch) and message.raw_signal_ids:
        return  # samples of a newer catalog cannot be re-encoded with this one, by design
    again = protocol.decode(protocol.encode(message))
    if again != message:
        raise AssertionError(f"decode(encode(m)) != m for {message!r}")


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
