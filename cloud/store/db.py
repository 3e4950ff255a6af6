"""Connections to the store: one type alias and one way to open them (UTC, typed errors).

Every DSN that enters lienwatch (`--dsn`, a config file's `database.dsn`) goes through
`check_dsn`: it must name the server and the database itself, because libpq would otherwise
fill them in from its defaults and PG* variables, and a schema could land in a database nobody
meant. Connections give up after `connect_timeout` seconds (10 unless the DSN sets it), so a
server that accepts TCP but never answers cannot hang a command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeAlias

import psycopg
from psycopg.conninfo import conninfo_to_dict

from cloud.store.errors import StoreError

Conn: TypeAlias = psycopg.Connection[tuple[Any, ...]]

DEFAULT_CONNECT_TIMEOUT_S = 10
MAX_CONNECT_TIMEOUT_S = 3600
_EXAMPLE = "e.g. postgresql://lienwatch_ingest@db.example:5432/lienwatch"


def check_dsn(dsn: object) -> dict[str, Any]:
    """The parameters of a DSN that names its server and database; `StoreError` otherwise."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise StoreError(f"the DSN is empty: give the PostgreSQL connection string explicitly ({_EXAMPLE})")
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as error:
        raise StoreError(f"the DSN is not a PostgreSQL connection string: {str(error).strip()}") from None
    needed = (("server (host)", ("host", "hostaddr")), ("database (dbname)", ("dbname",)))
    missing = [what for what, keys in needed if not any(str(params.get(key) or "").strip() for key in keys)]
    if missing:
        raise StoreError(f"the DSN does not name the {' or the '.join(missing)}; lienwatch does not "
                         f"use libpq's defaults or PG* variables for them ({_EXAMPLE})")
    timeout = params.get("connect_timeout")
    if timeout is not None:
        try:
            seconds = int(str(timeout))
        except ValueError:
            seconds = 0
        if not 1 <= seconds <= MAX_CONNECT_TIMEOUT_S:
            raise StoreError(f"the DSN's connect_timeout must be whole seconds in 1..{MAX_CONNECT_TIMEOUT_S} "
                             f"(got {timeout!r})")
    return params


def connect(dsn: str, *, autocommit: bool = True, application_name: str = "lienwatch") -> Conn:
    """Open a connection with the session time zone UTC; `StoreError` if it cannot be opened."""
    params = check_dsn(dsn)
    timeout = int(params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT_S)
    where = describe_params(params)
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, application_name=application_name,
                               connect_timeout=timeout)
    except psycopg.Error as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StoreError(f"cannot connect to the database ({where}) within {timeout} s "
                         f"(connect_timeout in the DSN): {detail}") from None
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def describe_params(params: dict[str, Any]) -> str:
    """`database D on HOST:PORT as USER` from DSN parameters (never the password)."""
    host = params.get("host") or params.get("hostaddr")
    port = params.get("port") or "5432"
    user = f" as {params['user']}" if params.get("user") else ""
    return f"database {params.get('dbname')!r} on {host}:{port}{user}"


def describe(conn: Conn) -> str:
    """Where an open connection writes: `database D on HOST:PORT as USER` (never the password)."""
    info = conn.info
    return f"database {info.dbname!r} on {info.host}:{info.port} as {info.user}"


# Advisory lock keys of the jobs that one process at a time may run (`exclusive`).
WATCHERS_LOCK = 0x6C77_0002  # the server-side watchers (cloud/watchers), in any API or receiver
COMMAND_SWEEP_LOCK = 0x6C77_0003  # the API's command sweeper (expire, publish again)


@contextlib.contextmanager
def exclusive(conn: Conn, lock: int) -> Iterator[bool]:
    """Hold the session advisory lock `lock` on `conn` for the block, if no other session does:
    yields whether it is held here (the block should then do the job, else skip it). The lock
    goes with the session if the connection breaks."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()
    held = bool(row and row[0])
    try:
        yield held
    finally:
        if held and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
