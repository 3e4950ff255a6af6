"""The receiver's TOML configuration: typed, with defaults, and strict about what it accepts.

Every key is listed in the dataclasses below with its default; an unknown key, a wrong type or
an out-of-range value is a `ConfigError` naming the key (`ConfigError: ingest.batch_max_rows must
be an integer >= 1`). deploy/receiver/receiver.toml is the annotated example, and a test loads it.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from cloud.store.db import check_dsn
from cloud.store.errors import StoreError
from cloud.store.layout import RETENTION_CLASSES
from cloud.store.retention import DEFAULT_DAYS, RetentionPolicy
from cloud.watchers.config import WatchersConfig, parse_watchers_config
from lienwatch.clock import SystemClock
from lienwatch.errors import ConfigError
from lienwatch.tls import check_ca_file, check_cert_and_key
from lienwatch.tomlfile import parse_toml
from protocol.limits import MAX_MESSAGE_BYTES

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the broker: the CA that signed the broker's certificate (pinned: the system CA store
    is never used) and the receiver's own certificate and key (both, or neither for a broker that
    authenticates by username and password)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def __post_init__(self) -> None:
        if not self.ca_file:
            raise ConfigError("mqtt.tls.ca_file is required: the CA that signed the broker's certificate "
                              "(pinned; the system CA store is never used)")
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("mqtt.tls.cert_file and mqtt.tls.key_file go together: set both or neither")


@dataclass(frozen=True)
class MqttConfig:
    """The broker connection: TLS (`[mqtt.tls]`) unless `insecure_plaintext = true` says otherwise."""

    host: str = "127.0.0.1"
    port: int = 8884  # the broker's service listener (deploy/mosquitto/lienwatch.conf)
    client_id: str = ""  # stable per receiver: the persistent session is keyed by it
    share_group: str = "lienwatch-ingest"
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 1000  # unacknowledged messages the broker may send us at once
    reconnect_max_s: float = 30.0  # broker unreachable at start: retry, full-jitter backoff up to this
    username: str = ""
    password: str = ""
    tls: TlsConfig | None = None
    insecure_plaintext: bool = False  # no TLS at all: for a broker on this machine's loopback only

    def __post_init__(self) -> None:
        if self.tls is None and not self.insecure_plaintext:
            raise ConfigError("mqtt.tls is required: add [mqtt.tls] with ca_file (and cert_file, key_file), "
                              "or set mqtt.insecure_plaintext = true for a broker on loopback")
        if self.tls is not None and self.insecure_plaintext:
            raise ConfigError("mqtt.insecure_plaintext = true contradicts [mqtt.tls]: remove one")
        if self.insecure_plaintext and self.host not in _LOOPBACK:
            raise ConfigError(f"mqtt.insecure_plaintext is for a broker on loopback ({', '.join(_LOOPBACK)}) "
                              f"only, not {self.host!r}: use [mqtt.tls]")


@dataclass(frozen=True)
class IngestConfig:
    batch_max_rows: int = 200_000
    batch_max_messages: int = 2000
    batch_max_delay_ms: int = 100
    urgent_batch_max_delay_ms: int = 20  # events, statuses, acks: their own session and batches
    max_future_s: int = 24 * 3600  # rows stamped further ahead than this are rejected
    max_payload_bytes: int = MAX_MESSAGE_BYTES  # bigger payloads are rejected as oversized
    rejected_payload_max_bytes: int = 64 * 1024
    device_refresh_s: float = 30.0
    merge: str = "copy_first"  # or "staging": always COPY to staging + INSERT ... ON CONFLICT DO NOTHING
    receipt_interval_ms: int = 2000  # stored receipts to devices that ask, at most this often; 0: none


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9464  # 0 disables the HTTP endpoint


@dataclass(frozen=True)
class MaintenanceConfig:
    partitions_ahead_days: int = 7
    retention_interval_s: float = 3600.0
    summaries_interval_s: float = 60.0
    summaries_batch: int = 5000


@dataclass(frozen=True)
class ReceiverConfig:
    dsn: str
    mqtt: MqttConfig
    ingest: IngestConfig = field(default_factory=IngestConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    receiver_id: str = ""
    watchers: WatchersConfig = field(default_factory=WatchersConfig)  # [watchers] (cloud/watchers)

    @property
    def name(self) -> str:
        return self.receiver_id or self.mqtt.client_id


_POSITIVE = {
    "keepalive_s", "receive_maximum", "batch_max_rows", "batch_max_messages",
    "batch_max_delay_ms", "urgent_batch_max_delay_ms", "rejected_payload_max_bytes", "device_refresh_s",
    "retention_interval_s",
    "summaries_interval_s", "summaries_batch", "session_expiry_s", "max_future_s", "max_payload_bytes",
}


def _section(cls: type[Any], data: object, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{where}.{name}"
        default = known[name].default
        if name == "tls":
            values[name] = _section(TlsConfig, value, key)
            continue
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false (got {value!r})")
            values[name] = value
            continue
        if default is None or default is MISSING:
            raise ConfigError(f"{key} cannot be set here")
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{key} must be a list of non-empty strings")
            values[name] = tuple(value)
        elif isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{key} must be an integer (got {value!r})")
            values[name] = value
        elif isinstance(default, float):
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number (got {value!r})")
            values[name] = float(value)
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be a string (got {value!r})")
            values[name] = value
        if name in _POSITIVE and values[name] <= 0:
            raise ConfigError(f"{key} must be > 0 (got {value!r})")
        if name == "receive_maximum" and values[name] > 65535:
            raise ConfigError(f"{key} must be 1..65535 (got {value!r})")
        if name == "port" and not (0 if where == "metrics" else 1) <= values[name] < 65536:
            raise ConfigError(f"{key} must be a TCP port 1..65535 (got {value!r})")
        if name.endswith("_file") and any(ord(c) < 0x20 for c in values[name]):
            raise ConfigError(f"{key} must not contain control characters")
    return cls(**values)


def parse_config(data: dict[str, Any]) -> ReceiverConfig:
    """Build a `ReceiverConfig` from parsed TOML, refusing anything unknown or out of range."""
    allowed = {"database", "mqtt", "ingest", "metrics", "maintenance", "retention", "receiver_id", "watchers"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    database = data.get("database")
    if not isinstance(database, dict) or not isinstance(database.get("dsn"), str) or not database["dsn"]:
        raise ConfigError("database.dsn is required (a PostgreSQL connection string)")
    try:
        check_dsn(database["dsn"])
    except StoreError as error:
        raise ConfigError(f"database.dsn: {error}") from None
    if set(database) - {"dsn"}:
        raise ConfigError(f"database: unknown key {sorted(set(database) - {'dsn'})[0]!r} (known: dsn)")
    mqtt: MqttConfig = _section(MqttConfig, data.get("mqtt", {}), "mqtt")
    if not mqtt.client_id:
        raise ConfigError("mqtt.client_id is required: a stable id per receiver keeps its persistent session")
    if any(c in mqtt.share_group for c in "/+#") or not mqtt.share_group:
        raise ConfigError("mqtt.share_group must be a non-empty name without '/', '+' or '#'")
    ingest: IngestConfig = _section(IngestConfig, data.get("ingest", {}), "ingest")
    if ingest.merge not in ("copy_first", "staging"):
        raise ConfigError(f"ingest.merge must be 'copy_first' or 'staging' (got {ingest.merge!r})")
    metrics: MetricsConfig = _section(MetricsConfig, data.get("metrics", {}), "metrics")
    receiver_id = data.get("receiver_id", "")
    if not isinstance(receiver_id, str):
        raise ConfigError("receiver_id must be a string")
    return ReceiverConfig(
        dsn=database["dsn"],
        mqtt=mqtt,
        ingest=ingest,
        metrics=metrics,
        maintenance=_section(MaintenanceConfig, data.get("maintenance", {}), "maintenance"),
        retention=_retention(data.get("retention", {})),
        receiver_id=receiver_id,
        watchers=parse_watchers_config(data.get("watchers")),
    )


def _retention(data: object) -> RetentionPolicy:
    if not isinstance(data, dict):
        raise ConfigError("retention must be a table")
    known = {f"{name}_days" for name in RETENTION_CLASSES} | {"action"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"retention: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    days = dict(DEFAULT_DAYS)
    for name in RETENTION_CLASSES:
        if f"{name}_days" in data:
            days[name] = data[f"{name}_days"]
    return RetentionPolicy(days=days, action=data.get("action", "drop"))


def check_files(config: ReceiverConfig, now_s: float) -> None:
    """The TLS material loads (lienwatch.tls) and the receiver's certificate is valid at `now_s`;
    ConfigError naming the key and the file otherwise (a server's clock is set: dates refuse)."""
    tls = config.mqtt.tls
    if tls is None:
        return
    dates = check_ca_file(Path(tls.ca_file), "mqtt.tls.ca_file")
    if tls.cert_file:
        leaf = check_cert_and_key(Path(tls.cert_file), Path(tls.key_file), "mqtt.tls.cert_file",
                                  "mqtt.tls.key_file")
        dates += [leaf] if leaf else []
    for window in dates:
        problem = window.problem(now_s)
        if problem:
            raise ConfigError(f"{problem}; the broker would refuse the connection")


def load_config(path: str | Path, *, check_tls: bool = True) -> ReceiverConfig:
    """Read and check a receiver TOML file, and (`check_tls`) the TLS files it names."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read receiver config {path}: {error.strerror}") from None
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    config = parse_config(data)
    if check_tls:
        check_files(config, SystemClock().wall_ns() / 1e9)
    return config
