"""Typed errors of the hot path: a bad feature configuration, a bad batch of samples."""

from __future__ import annotations

from lienwatch.errors import ConfigError, LienwatchError


class FeatureConfigError(ConfigError):
    """A ring buffer, window or feature was configured with an impossible setting."""


class SampleError(LienwatchError, ValueError):
    """A sample or batch of samples cannot be read (wrong type, shape, dtype or length)."""
