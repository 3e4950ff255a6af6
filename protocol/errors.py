"""Typed protocol errors: decoding any byte string either succeeds or raises one of these.

Every refusal has its own class so that a receiver can count and route them (a metric per class
name) and a test can assert the exact reason. All derive from `ProtocolError`, which derives from
`lienwatch.errors.LienwatchError` (the CLI prints one line and exits with code 2).
"""

from lienwatch.errors import LienwatchError


class ProtocolError(LienwatchError):
    """A payload, catalog entry or command that does not follow the lienwatch wire format."""


class UnknownSignalError(ProtocolError):
    """A VSS path or signal id that the signal catalog does not contain."""


# --- decoding -------------------------------------------------------------------------------


class PayloadTooLargeError(ProtocolError):
    """The payload (or a decompressed part of it) is bigger than the protocol's size limit."""


class MalformedMessageError(ProtocolError):
    """Not well-formed CBOR, trailing bytes, or a structure that is not a lienwatch message."""


class UnsupportedVersionError(ProtocolError):
    """The message's major version is not one this code understands (upgrade the receiver)."""


class UnknownMessageKindError(ProtocolError):
    """The message kind number is not defined in this major version."""


class InvalidFieldError(ProtocolError):
    """A field has the wrong type or is out of its documented range (on decode or encode)."""


class InternalDecodeError(MalformedMessageError):
    """The decoder failed in a way it should not (a bug): the payload is refused all the same.

    Tests and the fuzz target treat this class as a failure; in production it keeps the promise
    that decoding raises nothing but ProtocolError.
    """


class EncodeError(ProtocolError):
    """An object that cannot be encoded as a lienwatch message (wrong type, unrepresentable)."""


# --- MQTT topics ----------------------------------------------------------------------------


class TopicError(ProtocolError):
    """An MQTT topic that is not part of the lienwatch topic layout."""


class TopicMismatchError(ProtocolError):
    """A message arrived on a topic that does not match its kind or its device id."""


# --- downlink command authenticity ----------------------------------------------------------


class CommandRefusedError(ProtocolError):
    """A downlink command that the device must not execute (base of the reasons below)."""


class UnsignedCommandError(CommandRefusedError):
    """The command carries no signature."""


class BadSignatureError(CommandRefusedError):
    """The signature does not verify against any trusted command key."""


class ExpiredCommandError(CommandRefusedError):
    """The command's expiry time has passed (or its validity window is not acceptable)."""


class ReplayedCommandError(CommandRefusedError):
    """The command's nonce was already seen, or it is too old to be checked for replay."""


class WrongAddresseeError(CommandRefusedError):
    """The command is addressed to another device."""


# --- tools ----------------------------------------------------------------------------------


class InputError(ProtocolError):
    """A file given to a protocol tool cannot be read or written."""
