"""Fixtures for the cloud tests: a migrated database (plain storage) and registered devices.

The plain-mode tests force plain mode, so they test the same schema on any server, with or
without TimescaleDB; tests/cloud/test_timescaledb.py tests TimescaleDB mode on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloud.store.db import Conn, connect
from cloud.store.devices import Device, add_device
from cloud.store.migrate import migrate


@pytest.fixture
def migrated_db(fresh_db: str) -> str:
    """DSN of a fresh database with the lienwatch schema applied in plain storage mode."""
    migrate(fresh_db, mode="plain")
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
