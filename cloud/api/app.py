"""The lender's HTTP API: `create_app(config)` builds it, `lienwatch cloud api` serves it.

The psycopg pool (and, with `[mqtt]`, the command publisher) opens in the lifespan; handlers are
plain `def` (FastAPI runs them in its threadpool) and use the sync cloud/store functions on a
pooled connection. One router per resource in cloud/api/routes/; a new one is one
`app.include_router(...)` line in `create_app`. Every error is problem+json (problems.py).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from psycopg_pool import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.api import problems
from cloud.api.config import AppConfig
from cloud.api.context import ApiState
from cloud.api.metrics import ApiMetrics
from cloud.api.ratelimit import RateLimiter, SharedRateLimiter
from cloud.console import mount_console
from cloud.store.db import Conn
from cloud.store.partitions import PartitionKeeper
from cloud.watchers.job import WatcherJob
from lienwatch.clock import Clock, SystemClock

log = logging.getLogger(__name__)


def _configure(conn: Conn) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


def open_pool(config: AppConfig) -> ConnectionPool[Conn]:
    """The request pool: autocommit connections, session time zone UTC, opened without waiting
    (a database that is down at start makes /readyz say so, not the process fail)."""
    pool: ConnectionPool[Conn] = ConnectionPool(
        config.dsn,
        min_size=config.api.pool_min_size,
        max_size=config.api.pool_max_size,
        open=False,
        kwargs={"autocommit": True, "application_name": "lienwatch-api"},
        configure=_configure,
        name="lienwatch-api",
    )
    pool.open(wait=False)
    return pool


def _audit_partitions_ahead(pool: ConnectionPool[Conn], now: datetime) -> None:
    try:
        with pool.connection(timeout=5.0) as conn:
            PartitionKeeper().ensure(conn, "audit_log", now.date(), (now + timedelta(days=7)).date())
    except Exception as error:  # the audit writer creates a missing partition itself; say why here
        log.warning("audit_log partitions ahead not made at start: %s", error)


def _start_watchers(state: ApiState) -> WatcherJob | None:
    """The server-side watchers on the request pool, when `[watchers] enabled = true`."""
    if not state.config.watchers.enabled or state.pool is None:
        return None
    pool = state.pool
    job = WatcherJob(state.config.watchers, lambda: pool.connection(timeout=30.0), state.clock)
    job.start()
    return job


def create_app(config: AppConfig, *, clock: Clock | None = None) -> FastAPI:
    """The API for `config`; the pool opens when the app starts (lifespan) and closes with it."""
    clock = clock or SystemClock()
    state = ApiState(
        config=config,
        clock=clock,
        metrics=ApiMetrics(),
        # Several worker processes share their buckets in the database (cloud/api/workers.py).
        limiter=(SharedRateLimiter if config.api.workers > 1 else RateLimiter)(
            config.rate_limit.per_minute, config.rate_limit.burst, clock),
        signing_key=config.signing_key(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pool = open_pool(config)
        state.read_limiter = anyio.CapacityLimiter(config.api.read_threads)
        _audit_partitions_ahead(state.pool, datetime.fromtimestamp(clock.wall_ns() / 1e9, UTC))
        from cloud.api.commands import start_publishing

        stop_publishing = start_publishing(state)
        watchers = _start_watchers(state)
        # What is alive now (the app, its routes and models, the imported libraries: ~10^5
        # objects) lives as long as the process: out of the collector's sight, a full collection
        # no longer walks it in the middle of a request (a pause of tens of milliseconds).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # an app stopped in a process that goes on (tests) can be collected
            if watchers is not None:
                watchers.stop()
            stop_publishing()
            state.pool.close()
            state.pool = None

    app = FastAPI(
        title="lienwatch API",
        version="1",
        lifespan=lifespan,
        description="The lender's API: devices, events, commands, audit (docs/api.md).",
        responses=problems.COMMON_RESPONSES,
        docs_url=None,  # Swagger UI / ReDoc load scripts from a CDN: nothing is fetched from elsewhere
        redoc_url=None,
    )
    app.state.lienwatch = state
    problems.install(app)
    _install_middleware(app, state)
    from cloud.api.routes import audit_log, commands, devices, events, health, keys, override, reports, tracks

    # One line per resource router (cloud/api/routes/); other stages add theirs here.
    app.include_router(health.router)
    app.include_router(devices.router)
    app.include_router(events.router)
    app.include_router(commands.router)
    app.include_router(override.router)
    app.include_router(keys.router)
    app.include_router(audit_log.router)
    app.include_router(tracks.router)
    app.include_router(reports.router)
    mount_console(app, config.console)  # the operations console at /console/ (cloud/console, docs/console.md)
    return app


class MeasureMiddleware:
    """Counts and times every answer by route, and adds the configured security headers: plain
    ASGI (Starlette's `BaseHTTPMiddleware` runs the app in a task and wraps its response in a
    stream, which costs about a millisecond of CPU a request)."""

    def __init__(self, app: ASGIApp, state: ApiState) -> None:
        self.app = app
        self.state = state
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in state.config.security_headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                present = {name.lower() for name, _ in message.get("headers", ())}
                message["headers"] = [*message.get("headers", ()),
                                      *(h for h in self.headers if h[0] not in present)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            # The router stores the matched route in the scope it was given (this one).
            name = getattr(scope.get("route"), "path", "unmatched")
            metrics = self.state.metrics
            metrics.requests.labels(scope["method"], name, str(status)).inc()
            metrics.latency.labels(name).observe(time.perf_counter() - started)


def _install_middleware(app: FastAPI, state: ApiState) -> None:
    app.add_middleware(problems.RefuseNulMiddleware)  # innermost: measured, with security headers
    app.add_middleware(MeasureMiddleware, state=state)
    cors = state.config.cors
    if cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors.allow_origins),
            allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=cors.max_age_s,
        )
