"""Read endpoints run in a few threads of their own (`[api] read_threads`, 2 by default).

FastAPI runs a plain `def` endpoint in anyio's default pool of 40 threads. The reads (lists,
tracks, trips) are Python work between short queries, and Python runs one thread at a time:
sixteen requests in sixteen threads take turns at the GIL, which favours no one, so each waits
for all the others and some far longer (bench/api.py: device list p99 72-130 ms with 16 clients;
with two threads a worker 51-76 ms, the same p50). Two threads keep one running Python while the
other waits for PostgreSQL; the other requests wait their turn in order. Endpoints that wait on
something slow (commands waiting for the broker's PUBACK) stay in the default pool, so they never
hold up these reads.

    @router.get(...)
    @read_endpoint
    def list_things(caller: Annotated[Caller, Depends(get_caller)], ...) -> Response: ...
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread

from cloud.api.auth import Caller

P = ParamSpec("P")
R = TypeVar("R")


def read_endpoint(endpoint: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`endpoint` (a plain `def` taking `caller`) run in the app's read threads; FastAPI sees its
    signature (functools.wraps) and awaits it as an async endpoint."""

    @functools.wraps(endpoint)
    async def in_read_thread(*args: P.args, **kwargs: P.kwargs) -> R:
        caller = kwargs.get("caller")
        limiter = caller.state.read_limiter if isinstance(caller, Caller) else None
        return await anyio.to_thread.run_sync(functools.partial(endpoint, *args, **kwargs), limiter=limiter)

    return in_read_thread
