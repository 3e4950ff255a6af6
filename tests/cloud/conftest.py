"""Fixtures for the cloud tests: a migrated database (plain storage) and registered devices.

The cloud tests migrate in plain mode, so they test the same schema on any server, with or
without TimescaleDB; tests/cloud/test_timescaledb.py tests TimescaleDB mode on purpose.
`LIENWATCH_TEST_STORAGE=timescaledb` (with `LIENWATCH_TEST_DSN` naming a TimescaleDB server)
runs them all in TimescaleDB mode instead; those marked `plain_only` (declarative partitions,
their retention) are skipped there, as test_timescaledb.py covers chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import cast

import pytest

from cloud.store.db import Conn, connect
from cloud.store.devices import Device, add_device
from cloud.store.migrate import StorageMode, migrate

STORAGE = cast(StorageMode, os.environ.get("LIENWATCH_TEST_STORAGE", "plain"))
if STORAGE not in ("plain", "timescaledb"):
    raise pytest.UsageError(f"LIENWATCH_TEST_STORAGE={STORAGE!r}: use plain (the default) or timescaledb")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if STORAGE == "plain":
        return
    skip = pytest.mark.skip(reason="plain storage only (declarative partitions); "
                                   "LIENWATCH_TEST_STORAGE=timescaledb")
    for item in items:
        if item.get_closest_marker("plain_only"):
            item.add_marker(skip)


@pytest.fixture
def migrated_db(fresh_db: str) -> str:
    """DSN of a fresh database with the lienwatch schema applied in plain storage mode (or the
    mode LIENWATCH_TEST_STORAGE names)."""
    migrate(fresh_db, mode=STORAGE)
    return fresh_db


@pytest.fixture
def db(migrated_db: str) -> Iterator[Conn]:
    """An autocommit connection (session time zone UTC) to the migrated database."""
    with connect(migrated_db) as conn:
        yield conn


def register(conn: Conn, device_id: str, time_zone: str = "UTC") -> None:
    add_device(conn, Device(device_id=device_id, time_zone=time_zone))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say at the end of the run, not only in a skip reason, that the TimescaleDB suite did not run."""
    from tests.cloud.test_timescaledb import NOT_RUN

    skipped = terminalreporter.stats.get("skipped", [])
    if any(NOT_RUN in str(getattr(report, "longrepr", "")) for report in skipped):
        terminalreporter.write_line(NOT_RUN, yellow=True, bold=True)
