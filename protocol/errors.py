"""Typed protocol errors: decoding any byte string either succeeds or raises one of these."""

from lienwatch.errors import LienwatchError


class ProtocolError(LienwatchError):
    """A payload, catalog entry or command that does not follow the lienwatch wire format."""


class UnknownSignalError(ProtocolError):
    """A VSS path or signal id that the signal catalog does not contain."""
