"""A minimal HTTP/1.1 load client for the API benchmarks: keep-alive connections on one asyncio loop.

Why not httpx in threads: on a 2-core machine a client that spends a millisecond of Python per
request, under the GIL, takes the CPU the server is being measured on. This one writes a prepared
GET and reads the status line, the headers and a Content-Length body: tens of microseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """Latencies (ms) in completion order and the answers that were not 200."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if length is not None:
        return status, await reader.readexactly(length)
    if not chunked:
        raise ConnectionError("response without Content-Length or chunked encoding")
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        body += await reader.readexactly(size + 2)
        if size == 0:
            return status, bytes(body)


async def _client(host: str, port: int, paths: Sequence[str], headers: str, think_s: float,
                  result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for path in paths:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode()
            started = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            if status != 200:
                result.errors.append(f"{path}: {status} {body[:200]!r}")
            if think_s:
                await asyncio.sleep(think_s)
    finally:
        writer.close()


def run_load(host: str, port: int, token: str, paths: Sequence[str], clients: int,
             think_s: float = 0.0) -> LoadResult:
    """GET every path in `paths`, spread over `clients` keep-alive connections each sending back to
    back (after `think_s` of pause, if given); latencies are measured request by request."""
    headers = f"Authorization: Bearer {token}\r\nAccept: */*\r\n"
    result = LoadResult()

    async def main() -> None:
        await asyncio.gather(*(_client(host, port, paths[i::clients], headers, think_s, result)
                               for i in range(clients)))

    started = time.perf_counter()
    asyncio.run(main())
    result.wall_s = time.perf_counter() - started
    return result
