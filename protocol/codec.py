"""`encode` and `decode`: typed messages ↔ the lienwatch CBOR envelope.

Envelope (docs/protocol.md): uplink `[major, kind, header, body]`, command
`[major, 16, bstr .cbor command-body, signature / null]`, config `[major, 17, body]`,
stored receipt `[major, 18, body]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from protocol import bodies, cbor, fields, receipts, telemetry_codec
from protocol.catalog import Catalog, default_catalog
from protocol.errors import (
    EncodeError,
    InternalDecodeError,
    InvalidFieldError,
    MalformedMessageError,
    PayloadTooLargeError,
    ProtocolError,
    UnknownMessageKindError,
    UnsupportedVersionError,
)
from protocol.limits import MAJOR_VERSION, MAX_MESSAGE_BYTES, SIGNATURE_BYTES
from protocol.messages import (
    Command,
    CommandAck,
    Config,
    Event,
    Header,
    Message,
    MessageKind,
    SignedCommand,
    Status,
    StoredReceipt,
    TelemetryBatch,
)

_UPLINK_DECODERS: dict[int, Callable[[Header, Mapping[Any, Any]], Message]] = {
    MessageKind.EVENT: bodies.decode_event,
    MessageKind.STATUS: bodies.decode_status,
    MessageKind.COMMAND_ACK: bodies.decode_ack,
}


def encode(message: Message | Command, *, deflate: bool = False, catalog: Catalog | None = None) -> bytes:
    """The wire bytes of a message; InvalidFieldError (or another ProtocolError) if it is invalid.

    `deflate` compresses the packed columns of a telemetry batch with raw DEFLATE when that makes
    the message smaller (about a quarter on a minute of driving); other kinds ignore it.
    A bare `Command` is encoded unsigned (the edge refuses it); sign with `protocol.signing`.
    """
    if isinstance(message, TelemetryBatch):
        catalog = catalog or default_catalog()
        body = telemetry_codec.encode_body(message, catalog, deflate)
        envelope: list[Any] = [MAJOR_VERSION, 1, bodies.encode_header(message.header), body]
    elif isinstance(message, Event):
        envelope = [MAJOR_VERSION, 2, bodies.encode_header(message.header), bodies.encode_event(message)]
    elif isinstance(message, Status):
        envelope = [MAJOR_VERSION, 3, bodies.encode_header(message.header), bodies.encode_status(message)]
    elif isinstance(message, CommandAck):
        envelope = [MAJOR_VERSION, 4, bodies.encode_header(message.header), bodies.encode_ack(message)]
    elif isinstance(message, SignedCommand):
        if type(message.body) is not bytes:
            raise InvalidFieldError("SignedCommand.body must be the signed CBOR bytes")
        signature = message.signature
        if signature is not None:
            fields.octets(signature, "signature", SIGNATURE_BYTES)
        envelope = [MAJOR_VERSION, 16, message.body, signature]
    elif isinstance(message, Command):
        envelope = [MAJOR_VERSION, 16, encode_command_body(message), None]
    elif isinstance(message, Config):
        envelope = [MAJOR_VERSION, 17, bodies.encode_config(message)]
    elif isinstance(message, StoredReceipt):
        envelope = [MAJOR_VERSION, 18, receipts.encode_body(message)]
    else:
        raise EncodeError(f"cannot encode a {type(message).__name__} as a lienwatch message")
    try:
        data = cbor.dumps(envelope)
    except (ValueError, TypeError, OverflowError) as error:
        raise EncodeError(f"cannot encode {type(message).__name__}: {error}") from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise PayloadTooLargeError(
            f"encoded message is {len(data)} bytes, the limit is {MAX_MESSAGE_BYTES}: split the batch")
    return data


def encode_command_body(command: Command) -> bytes:
    """The CBOR bytes of a command body: what a command signature covers."""
    return cbor.dumps(bodies.encode_command(command))


def decode(data: bytes, *, catalog: Catalog | None = None) -> Message:
    """The typed message in `data`; raises a ProtocolError subclass and nothing else otherwise.

    A telemetry batch's signal ids are resolved with `catalog` (default: the shipped one).
    A command comes back as a `SignedCommand`: verify it with `protocol.signing` before use.
    """
    try:
        return _decode(data, catalog)
    except ProtocolError:
        raise
    except Exception as error:  # a decoder bug must still not escape as anything but ProtocolError
        raise InternalDecodeError(
            f"the decoder failed on this payload ({type(error).__name__}: {str(error)[:80]}); "
            "please report it with the payload") from error


def _decode(data: bytes, catalog: Catalog | None) -> Message:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessageError(f"a message is bytes, not {type(data).__name__}")
    envelope = cbor.loads(bytes(data))
    if type(envelope) is not list or len(envelope) < 3:
        raise MalformedMessageError("a lienwatch message is a CBOR array [version, kind, ...]")
    version, kind = envelope[0], envelope[1]
    if type(version) is not int:
        raise MalformedMessageError("the message version must be an integer")
    if version != MAJOR_VERSION:
        raise UnsupportedVersionError(
            f"message major version {fields._show(version)} is not supported (this code reads "
            f"version {MAJOR_VERSION}); upgrade the receiver or the device"
        )
    if type(kind) is not int:
        raise MalformedMessageError("the message kind must be an integer")
    return _decode_kind(kind, envelope, catalog)


def _decode_kind(kind: int, envelope: list[Any], catalog: Catalog | None) -> Message:
    if kind == MessageKind.TELEMETRY:
        header, body = _uplink_parts(envelope)
        catalog = catalog or default_catalog()
        fixes, samples, version, raw_ids = telemetry_codec.decode_body(body, catalog)
        return TelemetryBatch(header, fixes, samples, version, raw_ids)
    decoder = _UPLINK_DECODERS.get(kind)
    if decoder is not None:
        header, body = _uplink_parts(envelope)
        return decoder(header, body)
    if kind == MessageKind.COMMAND:
        if len(envelope) != 4:
            raise MalformedMessageError("a command is [version, 16, body, signature]")
        signed_body, signature = envelope[2], envelope[3]
        if type(signed_body) is not bytes:
            raise MalformedMessageError("a command body must be a byte string (the signed CBOR)")
        if signature is not None:
            signature = fields.octets(signature, "signature", SIGNATURE_BYTES)
        command = bodies.decode_command(
            fields.body_map(cbor.loads(signed_body, "command body"), "command body"))
        return SignedCommand(command, signed_body, signature)
    if kind == MessageKind.CONFIG:
        if len(envelope) != 3:
            raise MalformedMessageError("a config is [version, 17, body]")
        return bodies.decode_config(fields.body_map(envelope[2], "config body"))
    if kind == MessageKind.STORED_RECEIPT:
        if len(envelope) != 3:
            raise MalformedMessageError("a stored receipt is [version, 18, body]")
        return receipts.decode_body(fields.body_map(envelope[2], "stored receipt body"))
    raise UnknownMessageKindError(
        f"message kind {fields._show(kind)} is not defined in version {MAJOR_VERSION}")


def _uplink_parts(envelope: list[Any]) -> tuple[Header, Mapping[Any, Any]]:
    if len(envelope) != 4:
        raise MalformedMessageError("an uplink message is [version, kind, header, body]")
    return bodies.decode_header(envelope[2]), fields.body_map(envelope[3], "message body")
