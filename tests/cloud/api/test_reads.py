"""cloud/api/reads.py: read endpoints run in `[api] read_threads` threads, in order, and nowhere else."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import anyio

from cloud.api.auth import Caller, Principal
from cloud.api.keys import Role
from cloud.api.reads import read_endpoint


def test_reads_run_in_the_read_threads_only() -> None:
    running, most, threads = 0, 0, set()
    lock = threading.Lock()

    @read_endpoint
    def work(caller: Caller, n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.get_ident())
        time.sleep(0.02)
        with lock:
            running -= 1
        return n * 2

    async def main() -> list[Any]:
        state = SimpleNamespace(read_limiter=anyio.CapacityLimiter(2))
        caller = Caller(Principal("k", "u", Role.RISK_OFFICER), None, state, "", "GET", "/")  # type: ignore[arg-type]
        return await asyncio.gather(*(work(caller=caller, n=n) for n in range(8)))

    assert asyncio.run(main()) == [n * 2 for n in range(8)]
    assert most == 2  # never more at once than the limiter's threads
    assert threading.get_ident() not in threads  # never on the event loop's thread
    assert asyncio.iscoroutinefunction(work) and work.__wrapped__.__name__ == "work"  # type: ignore[attr-defined]
