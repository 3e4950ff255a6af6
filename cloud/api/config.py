"""The API's TOML configuration: typed, with defaults, strict about what it accepts.

    [database] dsn                       the API's role (lienwatch_api, deploy/postgres/roles.sql)
    [api]      host, port, pool, windows, the command signing key
    [api.rate_limit] [api.cors] [api.security_headers]
    [mqtt] (+ [mqtt.tls])                the broker commands are published to (cloud/config.py)
    [console]  tile_url, tile_attribution  the operations console's map (cloud/console)
    [watchers] the server-side watchers run by this process (cloud/watchers/config.py)

An unknown key, a wrong type or an out-of-range value is a `ConfigError` naming the key.
deploy/api/api.toml is the annotated example, and a test loads it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cloud.config import MqttConfig, _section
from cloud.console import ConsoleConfig, parse_console_config
from cloud.store.db import check_dsn
from cloud.store.errors import StoreError
from cloud.watchers.config import WatchersConfig, parse_watchers_config
from lienwatch.errors import ConfigError
from lienwatch.tomlfile import parse_toml
from protocol.signing import DEFAULT_MAX_LIFETIME_NS, KeyFormatError, PrivateKey, private_key_from_pem

_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
DEFAULT_SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True)
class RateLimitConfig:
    """A token bucket per API key: `burst` requests at once, refilled at `per_minute`."""

    per_minute: int = 600
    burst: int = 60


@dataclass(frozen=True)
class CorsConfig:
    """Origins allowed to call the API from a browser (none by default: same origin only)."""

    allow_origins: tuple[str, ...] = ()
    max_age_s: int = 600


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    pool_min_size: int = 1
    pool_max_size: int = 8
    # An account manager sees raw positions (track, latest position) only this far back.
    account_manager_track_days: int = 30
    # A device is online when it sent anything within this many seconds (Traccar: 600 s).
    online_window_s: int = 600
    max_page_size: int = 500
    command_signing_key_file: str = ""  # Ed25519 PKCS#8 PEM (`openssl genpkey -algorithm ed25519`)
    command_ttl_s: int = 3600  # default lifetime of a command; at most a week (protocol/signing.py)
    publish_timeout_s: float = 5.0
    allow_non_loopback: bool = False  # binding elsewhere is a deliberate choice (behind a TLS proxy)
    access_log: bool = True  # uvicorn's line per request (method, path, status; never the key)
    # Processes serving requests (one per core: one Python process answers on one core at a time);
    # above 1 they share the rate limits in PostgreSQL and their metrics (cloud/api/workers.py).
    workers: int = 1
    # Threads per process running the read endpoints (lists, tracks, trips: cloud/api/reads.py):
    # one runs Python while another waits for PostgreSQL; more only take turns at the GIL.
    read_threads: int = 2


_POSITIVE = (
    "pool_min_size",
    "pool_max_size",
    "account_manager_track_days",
    "online_window_s",
    "max_page_size",
    "command_ttl_s",
    "publish_timeout_s",
    "per_minute",
    "burst",
    "max_age_s",
    "workers",
    "read_threads",
)
MAX_WORKERS = 64
MAX_READ_THREADS = 64


@dataclass(frozen=True)
class AppConfig:
    dsn: str
    api: ApiConfig = field(default_factory=ApiConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    security_headers: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SECURITY_HEADERS))
    mqtt: MqttConfig | None = None  # None: commands cannot be sent (503), everything else works
    console: ConsoleConfig = field(default_factory=ConsoleConfig)  # [console]: map tiles (cloud/console)
    watchers: WatchersConfig = field(default_factory=WatchersConfig)  # [watchers] (cloud/watchers)

    def signing_key(self) -> PrivateKey | None:
        """The command signing key from `api.command_signing_key_file`, or None if unset."""
        path = self.api.command_signing_key_file
        if not path:
            return None
        try:
            return private_key_from_pem(Path(path).read_bytes())
        except OSError as error:
            raise ConfigError(f"api.command_signing_key_file: cannot read {path}: {error.strerror}") from None
        except KeyFormatError as error:
            raise ConfigError(f"api.command_signing_key_file: {path}: {error}") from None


def _checked(section: object, where: str, cls: type[Any], skip: tuple[str, ...] = ()) -> Any:
    data = {k: v for k, v in section.items() if k not in skip} if isinstance(section, dict) else section
    value = _section(cls, data, where)
    for f in fields(cls):
        number = getattr(value, f.name)
        if f.name in _POSITIVE and number <= 0:
            raise ConfigError(f"{where}.{f.name} must be > 0 (got {number!r})")
    return value


def parse_config(data: dict[str, Any]) -> AppConfig:
    """Build an `AppConfig` from parsed TOML, refusing anything unknown or out of range."""
    allowed = {"database", "api", "mqtt", "console", "watchers"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    database = data.get("database")
    if not isinstance(database, dict) or not isinstance(database.get("dsn"), str) or not database["dsn"]:
        raise ConfigError("database.dsn is required (a PostgreSQL connection string)")
    if set(database) - {"dsn"}:
        raise ConfigError(f"database: unknown key {sorted(set(database) - {'dsn'})[0]!r} (known: dsn)")
    try:
        check_dsn(database["dsn"])
    except StoreError as error:
        raise ConfigError(f"database.dsn: {error}") from None
    section = data.get("api", {})
    if not isinstance(section, dict):
        raise ConfigError("api must be a table")
    tables = ("rate_limit", "cors", "security_headers")
    api: ApiConfig = _checked(section, "api", ApiConfig, skip=tables)
    if api.host not in _LOOPBACK and not api.allow_non_loopback:
        raise ConfigError(
            f"api.host {api.host!r} is not loopback ({', '.join(_LOOPBACK)}): serve the API "
            "behind a TLS proxy on this machine, or set api.allow_non_loopback = true"
        )
    if not 1 <= api.port < 65536:
        raise ConfigError(f"api.port must be a TCP port 1..65535 (got {api.port!r})")
    if api.workers > MAX_WORKERS:
        raise ConfigError(f"api.workers must be <= {MAX_WORKERS} (got {api.workers!r})")
    if api.read_threads > MAX_READ_THREADS:
        raise ConfigError(f"api.read_threads must be <= {MAX_READ_THREADS} (got {api.read_threads!r})")
    if api.pool_min_size > api.pool_max_size:
        raise ConfigError("api.pool_min_size must be <= api.pool_max_size")
    if api.command_ttl_s * 10**9 > DEFAULT_MAX_LIFETIME_NS:
        raise ConfigError(
            f"api.command_ttl_s must be <= {DEFAULT_MAX_LIFETIME_NS // 10**9} "
            "(devices refuse longer-lived commands)"
        )
    rate: RateLimitConfig = _checked(section.get("rate_limit", {}), "api.rate_limit", RateLimitConfig)
    cors: CorsConfig = _checked(section.get("cors", {}), "api.cors", CorsConfig)
    for origin in cors.allow_origins:
        if origin != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", origin):
            raise ConfigError(f"api.cors.allow_origins: {origin!r} is not an origin (scheme://host[:port])")
    headers = dict(DEFAULT_SECURITY_HEADERS)
    extra = section.get("security_headers", {})
    if not isinstance(extra, dict):
        raise ConfigError("api.security_headers must be a table of header name = value")
    for name, value in extra.items():
        if not _HEADER_NAME.fullmatch(name) or not isinstance(value, str) or not value.isprintable():
            raise ConfigError(
                f"api.security_headers.{name}: a header name (A-Z a-z 0-9 -) and a printable "
                'string value ("" removes a default header)'
            )
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        if value:
            headers[name] = value
    mqtt: MqttConfig | None = None
    if "mqtt" in data:
        raw = data["mqtt"]
        if not isinstance(raw, dict):
            raise ConfigError("mqtt must be a table")
        mqtt = _section(MqttConfig, {"client_id": "lienwatch-api", **raw}, "mqtt")
    config = AppConfig(
        dsn=database["dsn"], api=api, rate_limit=rate, cors=cors, security_headers=headers, mqtt=mqtt,
        console=parse_console_config(data.get("console")),
        watchers=parse_watchers_config(data.get("watchers")),
    )
    config.signing_key()  # a configured key must load now, not at the first command
    return config


def load_config(path: str | Path) -> AppConfig:
    """Read and check an API TOML file."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read API config {path}: {error.strerror}") from None
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return parse_config(data)
