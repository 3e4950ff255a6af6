"""Rate limits per API key: a token bucket each, on an injectable clock.

A key may make `burst` requests at once; tokens come back at `per_minute / 60` a second. A
request without a token is refused with 429 and `Retry-After` (whole seconds until the next token).
`RateLimiter` keeps the buckets in this process (one API process, `[api] workers = 1`); idle
full buckets are forgotten so the table stays as small as the set of active keys.
`SharedRateLimiter` keeps them in PostgreSQL (`api_rate_buckets`, migration 0012), for several
API processes or hosts on one database: each take is one autocommit upsert on the request's
connection, so a key's limit holds whichever process answers.
"""

from __future__ import annotations

import math
import threading
from typing import LiteralString, Protocol

from cloud.api.keys import KEY_COLUMNS, ApiKey, live_key, parse_token
from cloud.store.db import Conn
from lienwatch.clock import Clock

_FORGET_AFTER = 4096  # buckets kept before full ones are swept


class Limiter(Protocol):
    """What the API asks of a rate limiter: 0 when `key` may make a request, else whole seconds
    to wait (`conn`: the request's connection, for a limiter that keeps its buckets there)."""

    def take(self, key: str, conn: Conn | None = None) -> int: ...


def _check(per_minute: int, burst: int) -> None:
    if per_minute <= 0 or burst <= 0:
        raise ValueError("a rate limit needs per_minute > 0 and burst > 0")


class RateLimiter:
    """Token buckets by key in this process; `take(key)` returns 0 when allowed, else seconds to wait."""

    def __init__(self, per_minute: int, burst: int, clock: Clock) -> None:
        _check(per_minute, burst)
        self.rate_per_ns = per_minute / 60e9
        self.burst = float(burst)
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (tokens, at monotonic ns)

    def take(self, key: str, conn: Conn | None = None) -> int:
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


# Refill by the time since the bucket was last touched (never negative: another host's clock may be
# behind), take a token if there is one; `allowed` says whether one was taken. Every SET
# expression reads the row as it was before this statement. `{source}` gives the bucket's row.
_REFILLED = "least(%(burst)s::float8, b.tokens + greatest(0, %(now)s::int8 - b.at_ns) * %(rate)s::float8)"
_UPSERT = f"""
    INSERT INTO api_rate_buckets AS b (bucket, tokens, at_ns, allowed)
    {{source}}
    ON CONFLICT (bucket) DO UPDATE SET
        tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
        at_ns = greatest(b.at_ns, %(now)s::int8),
        allowed = {_REFILLED} >= 1
    RETURNING allowed, tokens"""
_TAKE: LiteralString = _UPSERT.format(  # type: ignore[assignment]
    source="VALUES (%(bucket)s, %(burst)s::float8 - 1, %(now)s::int8, true)")
# A request's key and its token in one round trip: the key's row, and a token from its bucket
# only when the secret's hash matches and the key is live (a wrong secret spends nothing of the
# key's; the caller then checks the row again in constant time, keys.live_key).
_AUTHENTICATE_AND_TAKE: LiteralString = f"""
    WITH k AS (SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = %(bucket)s),
    t AS ({_UPSERT.format(source="SELECT k.key_id, %(burst)s::float8 - 1, %(now)s::int8, true FROM k "
                                 "WHERE k.revoked_at IS NULL AND k.secret_sha256 = %(secret_sha256)s")})
    SELECT k.*, t.allowed, t.tokens FROM k LEFT JOIN t ON true"""  # type: ignore[assignment]


class SharedRateLimiter:
    """Token buckets by key in PostgreSQL (`api_rate_buckets`), on the wall clock of `clock`:
    the same rule as `RateLimiter` for every API process that uses the database."""

    def __init__(self, per_minute: int, burst: int, clock: Clock) -> None:
        _check(per_minute, burst)
        self.rate_per_ns = per_minute / 60e9
        self.burst = float(burst)
        self.clock = clock
        self._takes = 0

    def take(self, key: str, conn: Conn | None = None) -> int:
        if conn is None:
            raise ValueError("SharedRateLimiter.take needs the request's connection")
        row = conn.execute(_TAKE, {"bucket": key, "burst": self.burst, "now": self.clock.wall_ns(),
                                   "rate": self.rate_per_ns}).fetchone()
        self._takes += 1
        if self._takes % _FORGET_AFTER == 0:
            self.forget_idle(conn)
        if row is None or row[0]:
            return 0
        return self._wait_s(float(row[1]))

    def authenticate_and_take(self, conn: Conn, token: str) -> tuple[ApiKey | None, int]:
        """keys.authenticate and `take(key_id)` in one statement: (the live key or None, seconds
        to wait: 0 when a token was taken; 0 too when there is no live key, nothing was taken)."""
        parsed = parse_token(token)
        if parsed is None:
            return None, 0
        row = conn.execute(_AUTHENTICATE_AND_TAKE, {
            "bucket": parsed[0], "secret_sha256": parsed[1], "burst": self.burst,
            "now": self.clock.wall_ns(), "rate": self.rate_per_ns}).fetchone()
        key = live_key(row[:7] if row is not None else None, parsed[1])
        if key is None or row is None or row[7] is None:  # no live key: no token was taken
            return None, 0
        self._takes += 1
        if self._takes % _FORGET_AFTER == 0:
            self.forget_idle(conn)
        return key, 0 if row[7] else self._wait_s(float(row[8]))

    def _wait_s(self, tokens: float) -> int:
        return max(1, math.ceil((1.0 - tokens) / self.rate_per_ns / 1e9))

    def forget_idle(self, conn: Conn) -> int:
        """Delete the buckets that are full again (as `RateLimiter` forgets them); returns how many."""
        cursor = conn.execute(
            "DELETE FROM api_rate_buckets "
            "WHERE tokens + greatest(0, %(now)s::int8 - at_ns) * %(rate)s::float8 >= %(burst)s::float8",
            {"now": self.clock.wall_ns(), "rate": self.rate_per_ns, "burst": self.burst})
        return cursor.rowcount
