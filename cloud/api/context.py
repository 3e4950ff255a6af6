"""What every request handler shares: the app's state and a database connection from the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from fastapi import Request
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.concurrency import run_in_threadpool

from cloud.api.config import AppConfig
from cloud.api.metrics import ApiMetrics
from cloud.api.problems import Problem
from cloud.api.ratelimit import Limiter
from cloud.store.db import Conn
from lienwatch.clock import Clock
from protocol.signing import PrivateKey


@dataclass
class ApiState:
    """One API instance: its configuration, clock, pool, limiter, metrics and command publisher."""

    config: AppConfig
    clock: Clock
    metrics: ApiMetrics
    limiter: Limiter
    signing_key: PrivateKey | None
    pool: ConnectionPool[Conn] | None = None
    publisher: Any = None  # cloud.api.publish.CommandPublisher once started
    read_limiter: Any = None  # anyio.CapacityLimiter of `[api] read_threads` once started (reads.py)
    extra: dict[str, Any] = field(default_factory=dict)  # other helpers' per-app state, by name


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.lienwatch
    return state


def _idle_connection(pool: ConnectionPool[Conn]) -> Conn | None:
    """A connection the pool has idle, taken without blocking the event loop (None if none)."""
    if pool.get_stats().get("pool_available", 0) <= 0:
        return None
    try:
        return pool.getconn(timeout=0.002)  # another request may have taken it meanwhile
    except PoolTimeout:
        return None


async def db_conn(request: Request) -> AsyncIterator[Conn]:
    """A pooled autocommit connection (session time zone UTC) for one request.

    Async, so that taking and returning a connection costs no trip through the threadpool (two
    of them a request, a few hundred microseconds of CPU each): an idle connection is taken on the
    event loop, and only a wait for one, or returning one that is not idle, goes to a thread."""
    state = api_state(request)
    pool = state.pool
    if pool is None:
        raise Problem(
            503, "Service Unavailable", "the database pool is not open", kind="database-unavailable"
        )
    try:
        idle = _idle_connection(pool)
        conn: Conn = idle if idle is not None else await run_in_threadpool(pool.getconn, 10.0)
    except (PoolTimeout, psycopg.OperationalError) as error:
        raise Problem(
            503,
            "Service Unavailable",
            f"the database is unavailable: {type(error).__name__}",
            kind="database-unavailable",
            headers={"Retry-After": "5"},
        ) from None
    try:
        yield conn
    finally:
        if not conn.closed and conn.info.transaction_status is TransactionStatus.IDLE:
            pool.putconn(conn)  # nothing to roll back: no I/O
        else:
            await run_in_threadpool(pool.putconn, conn)
