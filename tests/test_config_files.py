"""Files a config names are checked at start: TLS material (agent and receiver), the agent's
directories. Each bad one is a ConfigError naming the key, exit 2, one line: never a traceback.

Real PEM files from deploy/pki/make-test-pki.sh (plus an encrypted key from openssl).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.agent.config import load_config as load_agent_config
from edge.agent.preflight import preflight
from hil.services import REPO_ROOT
from lienwatch.cli import main
from lienwatch.clock import ManualClock
from lienwatch.errors import ConfigError
from lienwatch.tls import check_tls_files
from protocol.signing import generate_key, public_key_to_pem

DEVICE = "veh-1"


@pytest.fixture(scope="module")
def pki() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="lienwatch-tlsfiles-"))
    subprocess.run([str(REPO_ROOT / "deploy/pki/make-test-pki.sh"), str(root), DEVICE],
                   check=True, capture_output=True)
    pki = root / "pki"
    subprocess.run(["openssl", "pkey", "-in", str(pki / f"devices/{DEVICE}.key"), "-aes256", "-passout",
                    "pass:secret", "-out", str(pki / "encrypted.key")], check=True, capture_output=True)
    (pki / "garbage.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    os.mkfifo(pki / "fifo.crt")
    yield pki
    shutil.rmtree(root, ignore_errors=True)


def _files(pki: Path, **override: str) -> dict[str, Path]:
    files = {"ca_file": pki / "ca.crt", "cert_file": pki / f"devices/{DEVICE}.crt",
             "key_file": pki / f"devices/{DEVICE}.key"}
    return {**files, **{k: pki / v for k, v in override.items()}}


BAD_TLS = [  # (override of ca_file/cert_file/key_file, the key named, what the message says)
    ({"key_file": f"devices/{DEVICE}.crt"}, "key_file", "holds a certificate, not a private key"),
    ({"key_file": "server.key"}, "key_file", "is not the private key of"),
    ({"key_file": "missing.key"}, "key_file", "does not exist"),
    ({"key_file": "encrypted.key"}, "key_file", "is encrypted"),
    ({"key_file": "ca.crt"}, "key_file", "holds a certificate, not a private key"),
    ({"cert_file": f"devices/{DEVICE}.key"}, "cert_file", "holds no PEM certificate"),
    ({"cert_file": "garbage.crt"}, "cert_file", "is not a readable certificate"),
    ({"ca_file": "missing.crt"}, "ca_file", "does not exist"),
    ({"ca_file": f"devices/{DEVICE}.crt"}, "ca_file", "holds no CA certificate"),
    ({"ca_file": "ca.key"}, "ca_file", "holds no PEM certificate"),
    ({"ca_file": "garbage.crt"}, "ca_file", "is not a usable CA certificate file"),
    ({"ca_file": "devices"}, "ca_file", "is a directory"),
    ({"ca_file": "fifo.crt"}, "ca_file", "is not a regular file"),  # would block an open()
]


@pytest.mark.parametrize(("override", "key", "message"), BAD_TLS)
def test_bad_tls_material_is_a_config_error_naming_the_key(
        pki: Path, override: dict[str, str], key: str, message: str) -> None:
    files = _files(pki, **override)
    with pytest.raises(ConfigError, match=message) as error:
        check_tls_files(*((f"uplink.mqtt.{name}", path) for name, path in files.items()))
    assert str(error.value).startswith(f"uplink.mqtt.{key}: ") or f"uplink.mqtt.{key}" in str(error.value)


def test_good_tls_material_passes_and_an_expired_certificate_is_dated(pki: Path) -> None:
    good = check_tls_files(*((name, path) for name, path in _files(pki).items()))
    now_s = 1_830_000_000.0  # 2027-12: every fresh test certificate is valid
    assert [d.problem(now_s) for d in good] == [None, None]
    assert "is not valid yet (valid from" in str(good[1].problem(1_000_000_000.0))  # 2001
    expired = check_tls_files(*((n, p) for n, p in _files(pki, cert_file=f"expired/{DEVICE}.crt",
                                                           key_file=f"expired/{DEVICE}.key").items()))
    expected = f"cert_file: {pki}/expired/{DEVICE}.crt expired on Feb  1 00:00:00 2020 GMT"
    assert expired[1].problem(now_s) == expected


# --- `lienwatch edge run` ------------------------------------------------------------------------

def _agent_config(directory: Path, pki: Path, **paths: str) -> Path:
    keys = directory / "command-keys.pem"
    keys.write_bytes(public_key_to_pem(generate_key().public_key()))
    files = {k: str(v) for k, v in _files(pki).items()}
    sections: dict[str, dict[str, object]] = {
        "device": {"id": DEVICE},
        "agent": {"state_dir": str(directory / "state"), "status_file": str(directory / "run/status.json")},
        "uplink.mqtt": {"host": "127.0.0.1", "port": 1, **files},
        "downlink": {"command_keys": str(keys)},
    }
    for dotted, value in paths.items():
        section, _, name = dotted.replace("__", ".").rpartition(".")
        sections[section][name] = value
    config = directory / "agent.toml"
    config.write_text("".join(f"[{s}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
                              for s, values in sections.items()))
    return config


def _one_config_error(capsys: pytest.CaptureFixture[str], key: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lienwatch: ConfigError: {key}: "), err
    return err


@pytest.mark.parametrize(("override", "key", "message"), BAD_TLS)
def test_edge_run_refuses_bad_tls_material_with_exit_2(
        tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str],
        override: dict[str, str], key: str, message: str) -> None:
    paths = {f"uplink__mqtt__{name}": str(pki / value) for name, value in override.items()}
    assert main(["edge", "run", "--config", str(_agent_config(tmp_path, pki, **paths))]) == 2
    assert message in _one_config_error(capsys, f"uplink.mqtt.{key}")


def test_edge_run_with_an_expired_certificate_warns_with_the_dates(tmp_path: Path, pki: Path) -> None:
    """The agent still starts (it queues on flash; its clock may be unset at boot): a warning."""
    config = load_agent_config(_agent_config(
        tmp_path, pki, uplink__mqtt__cert_file=str(pki / f"expired/{DEVICE}.crt"),
        uplink__mqtt__key_file=str(pki / f"expired/{DEVICE}.key")))
    warnings = preflight(config, ManualClock(wall_ns=1_800_000_000 * 10**9))
    expected = f"uplink.mqtt.cert_file: {pki}/expired/{DEVICE}.crt expired on Feb  1 00:00:00 2020 GMT"
    assert warnings == [expected]


def _state_dir_is_a_file(d: Path, pki: Path) -> Path:
    (d / "state").write_text("x")
    return _agent_config(d, pki)


def _state_dir_under_a_file(d: Path, pki: Path) -> Path:
    (d / "blocker").write_text("x")
    return _agent_config(d, pki, agent__state_dir=str(d / "blocker/state"))


def _outbox_is_a_file(d: Path, pki: Path) -> Path:
    (d / "state").mkdir()
    (d / "state/outbox").write_text("x")
    return _agent_config(d, pki)


def _status_file_is_a_directory(d: Path, pki: Path) -> Path:
    (d / "run/status.json").mkdir(parents=True)
    return _agent_config(d, pki)


def _status_dir_is_a_file(d: Path, pki: Path) -> Path:
    (d / "run").write_text("x")
    return _agent_config(d, pki)


def _command_keys_garbage(d: Path, pki: Path) -> Path:
    config = _agent_config(d, pki)
    (d / "command-keys.pem").write_text("junk")
    return config


@pytest.mark.parametrize(("key", "prepare", "message"), [
    ("agent.state_dir", _state_dir_is_a_file, "is a file, not a directory"),
    ("agent.state_dir", _state_dir_under_a_file, "cannot be created: Not a directory"),
    ("agent.state_dir", _outbox_is_a_file, "the outbox directory"),
    ("agent.status_file", _status_file_is_a_directory, "is a directory; name a file"),
    ("agent.status_file", _status_dir_is_a_file, "is a file, not a directory"),
    ("downlink.command_keys", _command_keys_garbage, "command-keys.pem"),
])
def test_edge_run_refuses_unusable_agent_paths_with_exit_2(
        tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str],
        key: str, prepare: Callable[[Path, Path], Path], message: str) -> None:
    assert main(["edge", "run", "--config", str(prepare(tmp_path, pki))]) == 2
    assert message in _one_config_error(capsys, key)


def _run_without_file_access_override(*argv: str) -> subprocess.CompletedProcess[str]:
    """`lienwatch ARGV` for which file modes count: as root, without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (util-linux `setpriv`); as any other user, as that user."""
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, "-m", "lienwatch", *argv], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_edge_run_when_the_state_dir_is_not_writable_or_the_ca_unreadable(tmp_path: Path, pki: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o555)
    done = _run_without_file_access_override("edge", "run", "--config", str(_agent_config(tmp_path, pki)))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("lienwatch: ConfigError: agent.state_dir: ") and \
        "is not writable: Permission denied" in done.stderr and done.stderr.count("\n") == 1
    os.chmod(tmp_path / "state", 0o755)
    unreadable = tmp_path / "ca.crt"
    unreadable.write_bytes((pki / "ca.crt").read_bytes())
    unreadable.chmod(0)
    config = _agent_config(tmp_path, pki, uplink__mqtt__ca_file=str(unreadable))
    done = _run_without_file_access_override("edge", "run", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("lienwatch: ConfigError: uplink.mqtt.ca_file: cannot read") and \
        "Permission denied" in done.stderr and done.stderr.count("\n") == 1


# --- `lienwatch cloud ingest` --------------------------------------------------------------------

def _receiver_config(path: Path, pki: Path, **tls: str) -> Path:
    files = {"ca_file": pki / "ca.crt", "cert_file": pki / "services/lienwatch-ingest.crt",
             "key_file": pki / "services/lienwatch-ingest.key"}
    files.update({k: pki / v for k, v in tls.items()})
    path.write_text("[database]\ndsn = \"postgresql://db.example/nowhere\"\n"
                    "[mqtt]\nclient_id = \"r1\"\n[mqtt.tls]\n"
                    + "".join(f'{k} = "{v}"\n' for k, v in files.items()))
    return path


@pytest.mark.parametrize(("override", "key", "message"), [
    *BAD_TLS,
    ({"cert_file": f"expired/{DEVICE}.crt", "key_file": f"expired/{DEVICE}.key"}, "cert_file",
     "expired on Feb  1 00:00:00 2020 GMT; the broker would refuse the connection"),
])
def test_cloud_ingest_refuses_bad_tls_material_with_exit_2(
        tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str],
        override: dict[str, str], key: str, message: str) -> None:
    config = _receiver_config(tmp_path / "receiver.toml", pki, **override)
    assert main(["cloud", "ingest", "--config", str(config)]) == 2
    assert message in _one_config_error(capsys, f"mqtt.tls.{key}")
