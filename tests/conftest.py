"""Fixtures for the real services every integration test uses.

PostgreSQL and mosquitto are started once per test session on free loopback ports with their own
data directories (hil/services.py) and stopped afterwards. `LIENWATCH_TEST_DSN` points the
suite at a server of the user's instead. With CI=true a service that cannot start fails the
tests that need it; elsewhere those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from hil.services import MosquittoBroker, PostgresServer, start_mosquitto, start_postgres
from lienwatch.errors import ServiceError

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(what: str, error: Exception) -> NoReturn:
    message = f"{what} could not start: {error}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def started_postgres() -> PostgresServer:
    """A throwaway PostgreSQL server; one that cannot start fails the test in CI, else skips it."""
    try:
        return start_postgres()
    except (ServiceError, OSError) as error:
        _unavailable("PostgreSQL", error)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a superuser connection to the session's PostgreSQL server."""
    external = os.environ.get("LIENWATCH_TEST_DSN")
    if external:
        yield external
        return
    server = started_postgres()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def fresh_db(postgres_dsn: str) -> Iterator[str]:
    """DSN of a new, empty database for one test (dropped afterwards)."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(postgres_dsn, dbname=name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """The session's broker, started from deploy/mosquitto/lienwatch-dev.conf."""
    broker: MosquittoBroker | None = None
    try:
        broker = start_mosquitto()
    except (ServiceError, OSError) as error:
        _unavailable("mosquitto", error)
    assert broker is not None
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker_factory() -> Iterator[Callable[..., MosquittoBroker]]:
    """Start brokers of a test's own (e.g. to stop and restart them, or with the TLS config)."""
    started: list[MosquittoBroker] = []

    def factory(conf: Path | None = None, **kwargs: object) -> MosquittoBroker:
        try:
            broker = start_mosquitto(conf, **kwargs)  # type: ignore[arg-type]
        except (ServiceError, OSError) as error:
            _unavailable("mosquitto", error)
        started.append(broker)
        return broker

    yield factory
    for broker in started:
        broker.stop()
