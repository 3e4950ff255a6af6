"""Rate limits per API key: a token bucket each, on an injectable clock.

A key may make `burst` requests at once; tokens come back at `per_minute / 60` a second. A
request without a token is refused with 429 and `Retry-After` (whole seconds until the next token).
Buckets live in this process (one API process per host, docs/api.md); idle full buckets are
forgotten so the table stays as small as the set of active keys.
"""

from __future__ import annotations

import math
import threading

from lienwatch.clock import Clock

_FORGET_AFTER = 4096  # buckets kept before full ones are swept


class RateLimiter:
    """Token buckets by key; `take(key)` returns 0 when allowed, else seconds to wait."""

    def __init__(self, per_minute: int, burst: int, clock: Clock) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError("a rate limit needs per_minute > 0 and burst > 0")
        self.rate_per_ns = per_minute / 60e9
        self.burst = float(burst)
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (tokens, at monotonic ns)

    def take(self, key: str) -> int:
        now = self.clock.monotonic_ns()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate_per_ns)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > _FORGET_AFTER:
                    self._sweep(now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate_per_ns / 1e9))

    def _sweep(self, now: int) -> None:
        for key, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate_per_ns >= self.burst:
                del self._buckets[key]
