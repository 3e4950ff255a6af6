"""`lienwatch cloud keys add|list|revoke` and `lienwatch cloud api --config FILE` (a real uvicorn)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hil.services import free_port
from lienwatch.cli import main


def test_keys_add_list_revoke(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloud", "keys", "add", "--dsn", migrated_db, "--user", "alice",
                 "--role", "risk_officer"]) == 0
    out = capsys.readouterr().out
    token = out.split("token (shown only now): ")[1].strip()
    key_id = token.split("_")[1]
    assert main(["cloud", "keys", "list", "--dsn", migrated_db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["key_id"], k["user_name"], k["role"], k["revoked_at"]) for k in listed] == [
        (key_id, "alice", "risk_officer", None)]
    assert token not in json.dumps(listed)
    assert main(["cloud", "keys", "revoke", "--dsn", migrated_db, "--id", key_id]) == 0
    assert main(["cloud", "keys", "list", "--dsn", migrated_db]) == 0
    table = capsys.readouterr().out
    assert "alice" in table and "1 key(s)" in table and " -\n" not in table  # revoked: a date, not "-"
    assert main(["cloud", "keys", "revoke", "--dsn", migrated_db, "--id", "aaaaaaaaaaaa"]) == 2
    assert "no API key" in capsys.readouterr().err
    assert main(["cloud", "keys", "revoke", "--dsn", migrated_db, "--id", "BAD"]) == 2
    assert main(["cloud", "keys", "add", "--dsn", migrated_db, "--user=-x", "--role", "admin"]) == 2
    assert "user name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cloud", "keys", "add", "--dsn", migrated_db, "--user", "bob", "--role", "boss"])


def test_keys_refuse_a_database_without_the_schema(fresh_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloud", "keys", "list", "--dsn", fresh_db]) == 2
    assert "migrate" in capsys.readouterr().err


def test_cloud_api_serves_with_uvicorn(migrated_db: str, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "api.toml"
    config.write_text(f'[database]\ndsn = "{migrated_db}"\n[api]\nport = {port}\n')
    process = subprocess.Popen([sys.executable, "-m", "lienwatch", "cloud", "api", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    assert json.load(response)["status"] == "ready"
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
                    assert "server" not in {k.lower() for k in response.headers}
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stdout.read() if process.stdout else b""
                assert time.monotonic() < deadline, "the API did not answer within 60 s"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/devices", timeout=5)
        assert refused.value.code == 401
        assert refused.value.headers["Content-Type"] == "application/problem+json"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_cloud_api_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "api.toml"
    config.write_text('[database]\ndsn = "postgresql://x@127.0.0.1/db"\n[api]\nhost = "0.0.0.0"\n')
    assert main(["cloud", "api", "--config", str(config)]) == 2
    assert "ConfigError" in capsys.readouterr().err
