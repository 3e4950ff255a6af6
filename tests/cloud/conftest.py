"""Fixtures for the cloud tests: a migrated database and registered devices."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloud.store.db import Conn, connect
from cloud.store.devices import Device, add_device
from cloud.store.migrate import migrate


@pytest.fixture
def migrated_db(fresh_db: str) -> str:
    """DSN of a fresh database with the lienwatch schema applied (plain storage)."""
    migrate(fresh_db)
    return fresh_db


@pytest.fixture
def db(migrated_db: str) -> Iterator[Conn]:
    """An autocommit connection (session time zone UTC) to the migrated database."""
    with connect(migrated_db) as conn:
        yield conn


def register(conn: Conn, device_id: str, time_zone: str = "UTC") -> None:
    add_device(conn, Device(device_id=device_id, time_zone=time_zone))
