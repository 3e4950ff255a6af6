"""atheris fuzz target: `protocol.decode` returns a message or raises ProtocolError, for any input.

Run it for as long as you like (the golden vectors make a good seed corpus):

    mkdir -p /tmp/corpus && cp protocol/vectors/*.cbor /tmp/corpus/
    .venv/bin/python tests/protocol/fuzz_decode.py /tmp/corpus -max_total_time=600

Any other exception, a decoded message that does not survive encode → decode unchanged, or the
compiled fix-block decoder disagreeing with its numpy oracle, is a crash that libFuzzer reports
with the input that caused it.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["protocol"]):
    import protocol
    from protocol import telemetry_codec
    from protocol.errors import InternalDecodeError
    from protocol.messages import TelemetryBatch


def _outcome(data: bytes) -> object:
    try:
        return protocol.decode(data)
    except InternalDecodeError:
        raise
    except protocol.ProtocolError as error:
        return type(error)


def test_one_input(data: bytes) -> None:
    message = _outcome(data)
    telemetry_codec.ACCELERATED = False  # the compiled fix-block decoder must agree with numpy
    try:
        oracle = _outcome(data)
    finally:
        telemetry_codec.ACCELERATED = True
    if oracle != message:
        raise AssertionError(f"compiled and numpy decoders disagree: {message!r} != {oracle!r}")
    if isinstance(message, type) or (isinstance(message, TelemetryBatch) and message.raw_signal_ids):
        return  # refused; or samples of a newer catalog, which this one cannot re-encode by design
    assert not isinstance(message, type)
    again = protocol.decode(protocol.encode(message))  # type: ignore[arg-type]
    if again != message:
        raise AssertionError(f"decode(encode(m)) != m for {message!r}")


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
