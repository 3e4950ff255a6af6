"""Fault injection, fast mode (bench/faults.py): real agent, receiver, broker and PostgreSQL as
processes; the broker stopped and SIGKILLed, receiver and agent SIGKILLed, an outbox tail torn.
Every accepted record must be stored exactly once or counted lost."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.faults import DEVICE, make_pki, print_report, run_faults
from cloud.store.migrate import migrate

pytestmark = pytest.mark.services


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="lienwatch-faults-test-"))
    root.chmod(0o755)  # mosquitto, started as root, reads the PKI as its own user
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_every_accepted_record_is_stored_once_or_counted_lost(fresh_db: str, scratch: Path) -> None:
    migrate(fresh_db)
    etc = make_pki(scratch / "etc", DEVICE)
    work = scratch / "run"
    work.mkdir(mode=0o755)
    result = run_faults(fresh_db, etc, work, seed=7, rounds=1, fast=True, log=lambda line: None)
    print_report([(7, result)])
    assert result.accepted > 20, "the agent hardly ran: the test proves nothing"
    assert len(result.faults) == 5 and not any("did not drain" in f for f in result.faults), result.faults
    assert result.silently_lost == 0 and result.duplicates == 0, result
    assert result.stored + result.counted_lost >= result.accepted
