"""Connections to the store: one type alias and one way to open them (UTC, typed errors)."""

from __future__ import annotations

from typing import Any, TypeAlias

import psycopg

from cloud.store.errors import StoreError

Conn: TypeAlias = psycopg.Connection[tuple[Any, ...]]


def connect(dsn: str, *, autocommit: bool = True, application_name: str = "lienwatch") -> Conn:
    """Open a connection with the session time zone UTC; `StoreError` if it cannot be opened."""
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, application_name=application_name)
    except psycopg.Error as error:
        raise StoreError(f"cannot connect to the database: {str(error).strip()}") from None
    conn.execute("SET TIME ZONE 'UTC'")
    return conn
