"""Property tests over the OpenAPI spec (schemathesis): requests generated from /openapi.json,
valid and invalid, against the real server (uvicorn, a real database with data); no answer may be
a 5xx, and documented answers must match their schema. Kept fast: few examples per operation;
LIENWATCH_FUZZ_EXAMPLES=200 runs a deeper search (random, not the fixed seed)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from psycopg.conninfo import make_conninfo
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from cloud.api.app import create_app
from cloud.api.config import parse_config
from cloud.api.keys import create_key
from cloud.store.db import connect
from cloud.store.migrate import migrate
from hil.services import MosquittoBroker, free_port
from protocol.messages import Severity
from protocol.signing import generate_key, private_key_to_pem
from tests.cloud.api.conftest import NOW_NS, S, event, fixes, register, status, store
from tests.cloud.conftest import STORAGE

EXAMPLES = int(os.environ.get("LIENWATCH_FUZZ_EXAMPLES", "6"))


@dataclass(frozen=True)
class Served:
    base_url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def served(postgres_dsn: str, mosquitto: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Served]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(postgres_dsn, dbname=name)
    migrate(dsn, mode=STORAGE)
    with connect(dsn) as conn:
        _, token = create_key(conn, "fuzz-admin", "admin")
        register(conn, "veh-f1")
        store(conn, [fixes("veh-f1", 1, NOW_NS - 60 * S), status("veh-f1", 2, NOW_NS - 30 * S),
                     event("veh-f1", 3, 5, NOW_NS - 50 * S, Severity.ALERT)])
    port = free_port()
    key_file = tmp_path_factory.mktemp("fuzz") / "command-key.pem"
    key_file.write_bytes(private_key_to_pem(generate_key()))
    app = create_app(parse_config({
        "database": {"dsn": dsn},
        "api": {"port": port, "rate_limit": {"per_minute": 100_000, "burst": 10_000},
                "command_signing_key_file": str(key_file), "publish_timeout_s": 1.0},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "insecure_plaintext": True,
                 "client_id": f"api-fuzz-{port}"}}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="fuzz-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"})
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_no_request_gets_a_server_error(served: Served, mode: GenerationMode) -> None:
    """Every operation, with requests that fit the spec (positive) and that do not (negative)."""
    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 18
    fuzzed = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=EXAMPLES <= 6,
                  database=None)
        def run(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            case.call_and_validate(base_url=served.base_url, headers=served.headers,
                                   checks=[not_a_server_error, response_schema_conformance])

        try:
            run()
        except Unsatisfiable:  # negative: an operation without parameters or body has no invalid input
            assert mode is GenerationMode.NEGATIVE
            continue
        fuzzed += 1
    assert fuzzed >= (len(operations) if mode is GenerationMode.POSITIVE else 10)
