"""Typed errors of the cloud store (all are `LienwatchError`s: one line, exit code 2 on the CLI)."""

from lienwatch.errors import LienwatchError


class StoreError(LienwatchError):
    """The database could not be reached or a store operation failed; the message says why."""


class SchemaError(StoreError):
    """The database schema is missing, damaged, or newer than this version of lienwatch."""


class DeviceError(StoreError):
    """A device registration is invalid (bad id, VIN, fingerprint, time zone) or conflicts."""
