"""The operations console: static ES modules (no build step) served by the API at /console.

The browser calls only the API's documented endpoints (it reads /openapi.json and leaves out a
panel whose endpoint is not there). The one server-side piece is `config.json`, the console's
own settings: the map tile URL template (empty: the map is a plain projected grid, for an
offline bench) and its attribution text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lienwatch.errors import ConfigError

STATIC_DIR = Path(__file__).with_name("static")
PREFIX = "/console"
_TILE_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[^\s\"'<>]*)?")


@dataclass(frozen=True)
class ConsoleConfig:
    """`[console]`: tile_url is an XYZ template such as http://127.0.0.1:8081/{z}/{x}/{y}.png."""

    tile_url: str = ""
    tile_attribution: str = ""

    def __post_init__(self) -> None:
        placeholders = all(part in self.tile_url for part in ("{z}", "{x}", "{y}"))
        if self.tile_url and not (_TILE_URL.fullmatch(self.tile_url) and placeholders):
            raise ConfigError(f"console.tile_url {self.tile_url!r} must be an http(s) URL template "
                              "with {z}, {x} and {y} (or empty for the offline grid)")
        if len(self.tile_attribution) > 200 or not self.tile_attribution.isprintable():
            raise ConfigError("console.tile_attribution must be printable text of at most 200 characters")

    def tile_origin(self) -> str:
        """scheme://host[:port] of the tile server, or '' without one."""
        if not self.tile_url:
            return ""
        parts = urlsplit(self.tile_url.replace("{z}", "0").replace("{x}", "0").replace("{y}", "0"))
        return f"{parts.scheme}://{parts.netloc}"


def parse_console_config(section: object) -> ConsoleConfig:
    """A `[console]` TOML table (absent: the defaults) as a checked `ConsoleConfig`."""
    if section is None:
        return ConsoleConfig()
    if not isinstance(section, dict):
        raise ConfigError("console must be a table")
    known = {"tile_url", "tile_attribution"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"console: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for key, value in section.items():
        if not isinstance(value, str):
            raise ConfigError(f"console.{key} must be a string (got {type(value).__name__})")
    return ConsoleConfig(**section)


def content_security_policy(config: ConsoleConfig) -> str:
    """Scripts, styles and API calls from this origin only; images also from the tile server."""
    images = " ".join(filter(None, ("'self'", "data:", config.tile_origin())))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            f"img-src {images}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


class _Headers:
    """Sets the console's own security headers on every response of the console app."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in self.headers}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def console_app(config: ConsoleConfig | None = None) -> ASGIApp:
    """The console as an ASGI app to mount at /console (static files and config.json)."""
    config = config or ConsoleConfig()
    settings: dict[str, Any] = {"tile_url": config.tile_url, "tile_attribution": config.tile_attribution}

    async def settings_json(request: Request) -> Response:
        return JSONResponse(settings)

    app = Starlette(routes=[
        Route("/config.json", settings_json),
        Mount("/", StaticFiles(directory=STATIC_DIR, html=True)),
    ])
    return _Headers(app, {"Content-Security-Policy": content_security_policy(config),
                          "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def mount_console(app: Any, config: ConsoleConfig | None = None) -> None:
    """Serve the console at /console/ on a FastAPI/Starlette app (/console redirects there)."""

    async def to_slash(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    app.add_route(PREFIX, to_slash, include_in_schema=False)
    app.mount(PREFIX, console_app(config), name="console")
