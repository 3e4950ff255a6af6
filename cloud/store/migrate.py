"""Versioned SQL migrations: apply what is missing, record it, refuse a newer schema.

Migrations are the files `cloud/store/migrations/NNNN_name.sql`. A version may instead ship one
file per storage mode (`NNNN_name.plain.sql`, `NNNN_name.timescaledb.sql`); the mode is detected
once, at the first migration of a database, and recorded in `lienwatch_storage`, so every later
migration and the receiver follow the same choice. Each migration runs in its own transaction
together with its row in `schema_migrations`, so a failed migration leaves nothing behind.
Concurrent `migrate` runs serialise on an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal

import psycopg

from cloud.store.db import Conn, connect, describe
from cloud.store.errors import SchemaError, StoreError

StorageMode = Literal["plain", "timescaledb"]
STORAGE_MODES: tuple[StorageMode, ...] = ("plain", "timescaledb")
_MIGRATION_LOCK = 0x6C69656E  # "lien": pg_advisory_lock key for migrate runs
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescaledb))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its SQL text for a given storage mode and a checksum of that text."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrateResult:
    """What a `migrate` run found and did."""

    mode: StorageMode
    applied: tuple[int, ...]
    current_version: int
    where: str = ""  # `database D on HOST:PORT as USER`


def available_migrations(mode: StorageMode) -> list[Migration]:
    """The shipped migrations for `mode`, in version order (a mode-specific file wins)."""
    generic: dict[int, tuple[str, str]] = {}
    specific: dict[int, tuple[str, str]] = {}
    folder = resources.files("cloud.store").joinpath("migrations")
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        version, name, file_mode = int(match[1]), match[2], match[3]
        if file_mode is None:
            generic[version] = (name, entry.read_text("utf-8"))
        elif file_mode == mode:
            specific[version] = (name, entry.read_text("utf-8"))
    versions = sorted(set(generic) | set(specific))
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"shipped migrations are not numbered 1..n without gaps: {versions}")
    return [Migration(v, *(specific.get(v) or generic[v])) for v in versions]


def latest_version() -> int:
    return len(available_migrations("plain"))


def detect_mode(conn: Conn) -> StorageMode:
    """`timescaledb` when the extension can be created in this database, else `plain`."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        return "plain"
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error:
        # Installed but not loadable (e.g. missing shared_preload_libraries): use plain mode.
        return "plain"
    return "timescaledb"


def recorded_mode(conn: Conn) -> StorageMode | None:
    """The storage mode recorded at the first migration, or None for an unmigrated database."""
    exists = conn.execute("SELECT to_regclass('lienwatch_storage') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT mode FROM lienwatch_storage").fetchone()
    if row is None:
        return None
    if row[0] not in STORAGE_MODES:
        raise SchemaError("lienwatch_storage holds no valid storage mode; the schema is damaged")
    mode: StorageMode = row[0]
    return mode


def current_version(conn: Conn) -> int:
    """The highest applied migration version (0 for an empty database)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def check_schema(conn: Conn) -> StorageMode:
    """Raise `SchemaError` unless the database holds exactly the schema this code expects."""
    version = current_version(conn)
    latest = latest_version()
    if version > latest:
        raise SchemaError(
            f"the database schema is version {version}, newer than this lienwatch ({latest}): "
            "upgrade lienwatch before running it against this database"
        )
    if version < latest:
        raise SchemaError(
            f"the database schema is version {version}, this lienwatch needs {latest}: "
            "run `lienwatch cloud migrate --dsn ...` first"
        )
    mode = recorded_mode(conn)
    assert mode is not None
    return mode


def migrate(dsn: str, *, mode: StorageMode | Literal["auto"] = "auto",
            until: int | None = None) -> MigrateResult:
    """Apply every missing migration (up to version `until`, for upgrade tests) to the database
    at `dsn`; safe to run again."""
    with connect(dsn, application_name="lienwatch-migrate") as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            return replace(_migrate_locked(conn, mode, until), where=describe(conn))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))


def _migrate_locked(conn: Conn, wanted: StorageMode | Literal["auto"], until: int | None) -> MigrateResult:
    with conn.transaction():
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        conn.execute(
            """CREATE TABLE IF NOT EXISTS lienwatch_storage (
                   singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                   mode        text NOT NULL CHECK (mode IN ('plain', 'timescaledb')),
                   detected_at timestamptz NOT NULL DEFAULT now(),
                   server_version text NOT NULL,
                   timescaledb_version text)"""
        )
    version = current_version(conn)
    latest = latest_version()
    if version > latest:
        raise SchemaError(
            f"the database schema is version {version}, newer than this lienwatch knows ({latest}); "
            "refusing to touch it: upgrade lienwatch instead"
        )
    mode = recorded_mode(conn)
    if mode is None:
        mode = detect_mode(conn) if wanted == "auto" else wanted
        if mode == "timescaledb" and wanted == "timescaledb":
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            except psycopg.Error as error:
                raise StoreError(f"storage mode timescaledb requested, but: {error}".strip()) from None
        ts_row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        conn.execute(
            "INSERT INTO lienwatch_storage (mode, server_version, timescaledb_version) "
            "VALUES (%s, current_setting('server_version'), %s)",
            (mode, ts_row[0] if ts_row else None),
        )
    elif wanted != "auto" and wanted != mode:
        raise SchemaError(f"this database was set up in storage mode {mode!r}, not {wanted!r}")
    migrations = available_migrations(mode)
    applied_rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    applied = {int(v): str(c) for v, c in applied_rows}
    for migration in migrations:
        if migration.version in applied and applied[migration.version] != migration.checksum:
            raise SchemaError(
                f"migration {migration.version:04d}_{migration.name} was changed after it was applied "
                "to this database; ship schema changes as a new migration"
            )
    done: list[int] = []
    for migration in migrations:
        if migration.version in applied or (until is not None and migration.version > until):
            continue
        try:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.Error as error:
            raise StoreError(
                f"migration {migration.version:04d}_{migration.name} failed: {error}".strip()
            ) from None
        done.append(migration.version)
    return MigrateResult(mode=mode, applied=tuple(done), current_version=current_version(conn))
