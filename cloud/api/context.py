"""What every request handler shares: the app's state and a database connection from the pool."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from fastapi import Request
from psycopg_pool import ConnectionPool, PoolTimeout

from cloud.api.config import AppConfig
from cloud.api.metrics import ApiMetrics
from cloud.api.problems import Problem
from cloud.api.ratelimit import RateLimiter
from cloud.store.db import Conn
from lienwatch.clock import Clock
from protocol.signing import PrivateKey


@dataclass
class ApiState:
    """One API instance: its configuration, clock, pool, limiter, metrics and command publisher."""

    config: AppConfig
    clock: Clock
    metrics: ApiMetrics
    limiter: RateLimiter
    signing_key: PrivateKey | None
    pool: ConnectionPool[Conn] | None = None
    publisher: Any = None  # cloud.api.publish.CommandPublisher once started
    extra: dict[str, Any] = field(default_factory=dict)  # other helpers' per-app state, by name


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.lienwatch
    return state


def db_conn(request: Request) -> Iterator[Conn]:
    """A pooled autocommit connection (session time zone UTC) for one request."""
    state = api_state(request)
    if state.pool is None:
        raise Problem(
            503, "Service Unavailable", "the database pool is not open", kind="database-unavailable"
        )
    try:
        with state.pool.connection(timeout=10.0) as conn:
            yield conn
    except (PoolTimeout, psycopg.OperationalError) as error:
        raise Problem(
            503,
            "Service Unavailable",
            f"the database is unavailable: {type(error).__name__}",
            kind="database-unavailable",
            headers={"Retry-After": "5"},
        ) from None
