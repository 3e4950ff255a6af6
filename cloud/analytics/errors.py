"""Typed errors of the analytics functions (the API answers them with a 422 problem)."""

from lienwatch.errors import LienwatchError


class AnalyticsError(LienwatchError):
    """A query parameter is unusable (range reversed or too long, tolerance out of range, ...)."""
