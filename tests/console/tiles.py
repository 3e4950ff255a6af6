"""A tile server for the map test: XYZ PNG tiles made here (a checkerboard of two greens, with a
darker border), counted per request. No map data: only proof that the console asks for the tiles
under the track and draws them."""

from __future__ import annotations

import struct
import zlib
from functools import cache

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def png(width: int, height: int, rgb: tuple[int, int, int], border: tuple[int, int, int]) -> bytes:
    """An RGB PNG of one colour with a one-pixel border of another."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows.extend(border if x in (0, width - 1) or y in (0, height - 1) else rgb)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + \
        chunk(b"IEND", b"")


@cache
def _tile(odd: bool) -> bytes:
    return png(256, 256, (200, 225, 190) if odd else (215, 235, 205), (150, 170, 140))


class TileServer:
    """`app` serves /{z}/{x}/{y}.png; `requested` lists (z, x, y) in the order asked."""

    def __init__(self) -> None:
        self.requested: list[tuple[int, int, int]] = []
        self.app = Starlette(routes=[Route("/{z:int}/{x:int}/{y:int}.png", self._serve)])

    async def _serve(self, request: Request) -> Response:
        z, x, y = (int(request.path_params[k]) for k in ("z", "x", "y"))
        self.requested.append((z, x, y))
        return Response(_tile(bool((x + y) % 2)), media_type="image/png")
