"""Every DSN that enters the cloud commands (`--dsn`, a receiver config) names its server and
database itself, and no command waits long for a server that accepts TCP but never answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cloud.store.db import DEFAULT_CONNECT_TIMEOUT_S, check_dsn
from cloud.store.errors import StoreError
from lienwatch.cli import main

# Each cloud command that takes a DSN, with the arguments it needs besides --dsn.
DSN_COMMANDS = [
    ["cloud", "migrate"],
    ["cloud", "maintain"],
    ["cloud", "devices", "list"],
    ["cloud", "devices", "add", "--id", "gw-1"],
    ["cloud", "devices", "remove", "--id", "gw-1"],
]
DEFAULTED = ["", "   ", "postgresql://", "postgresql:///lienwatch", "postgresql://db.example",
             "host=127.0.0.1", "dbname=lienwatch", "port=5432 user=postgres", "host='' dbname=x"]


def _receiver_toml(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "receiver.toml"
    path.write_text(f'[database]\ndsn = "{dsn}"\n[mqtt]\nclient_id = "r1"\ninsecure_plaintext = true\n'
                    '[metrics]\nport = 0\n')
    return path


@pytest.fixture
def libpq_defaults_point_at_a_real_database(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """PG* variables naming a real, empty database: what a defaulted DSN would silently use."""
    params = conninfo_to_dict(fresh_db)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("dbname", "PGDATABASE")):
        if params.get(key):
            monkeypatch.setenv(var, str(params[key]))
    return fresh_db


@pytest.mark.parametrize("command", DSN_COMMANDS, ids=lambda c: " ".join(c[:3]))
@pytest.mark.parametrize("dsn", DEFAULTED)
def test_an_empty_or_defaulted_dsn_is_refused_before_anything_is_written(
    libpq_defaults_point_at_a_real_database: str, command: list[str], dsn: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*command, "--dsn", dsn]) == 2
    err = capsys.readouterr().err
    assert "StoreError" in err and "DSN" in err and "Traceback" not in err
    with psycopg.connect(libpq_defaults_point_at_a_real_database) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables == (0,), "a defaulted DSN reached the database libpq's defaults name"


@pytest.mark.parametrize("dsn", [*DEFAULTED, "postgresql:///x", "not a dsn ==="])
def test_a_receiver_config_with_a_defaulted_dsn_is_refused(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cloud", "ingest", "--config", str(_receiver_toml(tmp_path, dsn))]) == 2
    assert "database.dsn" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", ["0", "-1", "abc", "1e9", "99999"])
def test_a_dsn_cannot_disable_the_connect_timeout(timeout: str) -> None:
    with pytest.raises(StoreError, match="connect_timeout"):
        check_dsn(f"postgresql://u@db.example/x?connect_timeout={timeout}")


def test_commands_that_write_say_where_without_the_password(
    fresh_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    params = conninfo_to_dict(fresh_db)
    dsn = make_conninfo(fresh_db, password="s3cret-pw")  # trust auth ignores it
    assert main(["cloud", "migrate", "--dsn", dsn]) == 0
    out = capsys.readouterr().out
    assert f"database '{params['dbname']}' on {params['host']}:{params['port']} as postgres" in out
    assert "s3cret" not in out
    assert main(["cloud", "devices", "add", "--dsn", dsn, "--id", "gw-where"]) == 0
    out = capsys.readouterr().out
    assert f"in database '{params['dbname']}' on {params['host']}:{params['port']}" in out
    assert "s3cret" not in out
    assert main(["cloud", "maintain", "--dsn", dsn]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"database '{params['dbname']}' on {params['host']}:{params['port']}")
    assert "s3cret" not in out


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that completes TCP handshakes (the kernel's backlog) but never says a
    word: a hung or firewalled-by-blackhole database server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def _run(argv: list[str]) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lienwatch", *argv], capture_output=True, text=True,
                            timeout=90, env={**os.environ, "PGCONNECT_TIMEOUT": ""})
    return result.returncode, result.stderr, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("command", [*DSN_COMMANDS, ["cloud", "ingest"]], ids=lambda c: " ".join(c[:3]))
def test_every_cloud_command_gives_up_on_a_server_that_never_answers(
    silent_server: int, tmp_path: Path, command: list[str]
) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{silent_server}/lienwatch?connect_timeout=1"
    argv = ([*command, "--config", str(_receiver_toml(tmp_path, dsn))] if command[1] == "ingest"
            else [*command, "--dsn", dsn])
    code, err, elapsed = _run(argv)
    assert code == 2, err
    assert "cannot connect to the database" in err and "within 1 s" in err and "Traceback" not in err
    assert elapsed < 30, f"took {elapsed:.0f} s"


@pytest.mark.slow
def test_the_default_connect_timeout_is_short(silent_server: int) -> None:
    code, err, elapsed = _run(["cloud", "devices", "list", "--dsn",
                               f"postgresql://postgres@127.0.0.1:{silent_server}/lienwatch"])
    assert code == 2, err
    assert f"within {DEFAULT_CONNECT_TIMEOUT_S} s" in err
    assert elapsed < 60, f"took {elapsed:.0f} s"
