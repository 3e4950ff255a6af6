"""Provisioning end to end against the test CA: the device makes its key and CSR (`lienwatch edge
provision`), the cloud signs it and registers VIN and time zone (`lienwatch cloud devices add
--csr`), the device installs the certificate (`edge install-cert`) and the shipped broker accepts
it; a field replacement (`devices replace`) revokes the old tracker's certificate (docs/gateway.md)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.agent.config import load_config
from hil.services import MosquittoBroker
from hil.testpki import REPO_ROOT, make_test_etc
from lienwatch.cli import main

DEVICE = "gw-prov-1"
VIN = "WVWZZZ1KZAW000123"
SHIPPED_CONF = REPO_ROOT / "deploy/mosquitto/lienwatch.conf"


@pytest.fixture
def cloud_etc() -> Iterator[Path]:
    root = make_test_etc(Path(tempfile.mkdtemp(prefix="lienwatch-prov-cloud-")), ["other-device"])
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def device_etc() -> Iterator[Callable[[str], Path]]:
    made: list[Path] = []

    def make(name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"lienwatch-prov-{name}-"))
        made.append(path)
        return path / "etc"

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _provision(capsys: pytest.CaptureFixture[str], etc: Path, *extra: str) -> str:
    code, out, err = _cli(capsys, "edge", "provision", "--id", DEVICE, "--host", "localhost", "--vin", VIN,
                          "--time-zone", "Europe/Vienna", "--etc", str(etc), "--state-dir",
                          str(etc.parent / "state"), *extra)
    assert code == 0, err
    return out


def _connack(port: int, ca: Path, cert: Path, key: Path) -> int | None:
    """TLS with this certificate, then MQTT 3.1.1 CONNECT as DEVICE: the CONNACK code, or None."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.load_cert_chain(cert, key)
    connect = b"\x10\x15\x00\x04MQTT\x04\x02\x00\x3c\x00\x09" + DEVICE.encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(connect)
            reply = tls.recv(4)
    except (ssl.SSLError, ConnectionError):
        return None
    return reply[3] if len(reply) == 4 and reply[0] == 0x20 else None


def _serial(cert: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(cert)], check=True,
                         capture_output=True, text=True).stdout
    return out.split("=")[1].strip().lstrip("0")


def _crl_serials(crl: Path) -> set[str]:
    text = subprocess.run(["openssl", "crl", "-noout", "-text", "-in", str(crl)], check=True,
                          capture_output=True, text=True).stdout
    return {line.split(":", 1)[1].strip().lstrip("0") for line in text.splitlines()
            if "Serial Number:" in line}


def test_factory_then_field_replacement(migrated_db: str, cloud_etc: Path, device_etc: Callable[[str], Path],
                                        broker_factory: Callable[..., MosquittoBroker],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ca_dir = cloud_etc / "pki"
    # Factory: the key is made on the device, 0600, and only the CSR leaves it.
    etc = device_etc("first")
    out = _provision(capsys, etc)
    key, csr = etc / "pki/device.key", etc / "pki/device.csr"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "PRIVATE KEY" not in csr.read_text()
    printed_key_hash = out.split("public key SHA-256 ")[1].split()[0]
    config = load_config(etc / "agent.toml")  # the agent's own schema accepts the rendered template
    assert config.device_id == DEVICE and config["uplink.mqtt.host"] == "localhost"
    rendered = tomllib.loads((etc / "agent.toml").read_text())
    assert rendered["vehicle"]["vin"] == VIN and rendered["vehicle"]["time_zone"] == "Europe/Vienna"
    assert rendered["uplink"]["mqtt"]["key_file"] == str(key)
    assert rendered["detectors"], "the template's detectors are kept"

    cert = cloud_etc / f"{DEVICE}.crt"
    code, out, err = _cli(capsys, "cloud", "devices", "add", "--dsn", migrated_db, "--id", DEVICE,
                          "--vin", VIN, "--time-zone", "Europe/Vienna", "--csr", str(csr),
                          "--ca-dir", str(ca_dir), "--cert-out", str(cert))
    assert code == 0, err
    from cloud.enroll import public_key_sha256
    assert public_key_sha256(csr) == printed_key_hash  # the operator can compare what the device printed
    listing = _cli(capsys, "cloud", "devices", "list", "--dsn", migrated_db, "--json")[1]
    (listed,) = [d for d in json.loads(listing) if d["device_id"] == DEVICE]
    fingerprint = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
                                 check=True, capture_output=True, text=True).stdout
    first_fingerprint = fingerprint.split("=")[1].strip().replace(":", "").lower()
    assert listed["vin"] == VIN and listed["time_zone"] == "Europe/Vienna"
    assert listed["cert_fingerprint"] == first_fingerprint

    code, _, err = _cli(capsys, "edge", "install-cert", "--cert", str(cert),
                        "--ca-file", str(ca_dir / "ca.crt"), "--etc", str(etc))
    assert code == 0, err
    broker = broker_factory(SHIPPED_CONF, path_map={"/etc/lienwatch/": f"{cloud_etc}/"})
    port = broker.ports[8883]
    first = (etc / "pki/ca.crt", etc / "pki/device.crt", key)
    assert _connack(port, *first) == 0

    # Field replacement: a new tracker for the same car, its own key; the old certificate revoked.
    new_etc = device_etc("second")
    _provision(capsys, new_etc)
    assert (new_etc / "pki/device.key").read_text() != key.read_text()
    new_cert = cloud_etc / f"{DEVICE}-2.crt"
    pidfile = cloud_etc / "mosquitto.pid"
    pidfile.write_text(f"{broker.process.pid}\n")
    code, out, err = _cli(capsys, "cloud", "devices", "replace", "--dsn", migrated_db, "--id", DEVICE,
                          "--csr", str(new_etc / "pki/device.csr"), "--ca-dir", str(ca_dir),
                          "--cert-out", str(new_cert))
    assert code == 0, err
    assert "revoked 1 older certificate" in out
    assert _serial(cert) in _crl_serials(ca_dir / "ca.crl")
    assert _serial(new_cert) not in _crl_serials(ca_dir / "ca.crl")
    assert _cli(capsys, "edge", "install-cert", "--cert", str(new_cert), "--ca-file", str(ca_dir / "ca.crt"),
                "--etc", str(new_etc))[0] == 0
    os.kill(broker.process.pid, 1)  # SIGHUP: the broker rereads the CRL
    second = (new_etc / "pki/ca.crt", new_etc / "pki/device.crt", new_etc / "pki/device.key")
    from tests.edge_agent.conftest import wait_until
    assert wait_until(lambda: _connack(port, *first) is None, 10, step_s=0.2), "old tracker still accepted"
    assert _connack(port, *second) == 0
    listing = _cli(capsys, "cloud", "devices", "list", "--dsn", migrated_db, "--json")[1]
    (listed,) = [d for d in json.loads(listing) if d["device_id"] == DEVICE]
    from cloud.enroll import fingerprint as cert_fingerprint
    assert listed["cert_fingerprint"] == cert_fingerprint(new_cert) != first_fingerprint
    assert listed["vin"] == VIN


def test_provision_refuses_bad_input(device_etc: Callable[[str], Path], cloud_etc: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    etc = device_etc("bad")
    for args, message in (
        (["--id", "Bad/Id", "--host", "h"], "device id"),
        (["--id", "ok", "--host", "h", "--vin", "SHORT"], "VIN"),
        (["--id", "ok", "--host", "h", "--time-zone", "Mars/Olympus"], "time zone"),
        (["--id", "ok", "--host", "bad host!"], "host"),
        (["--id", "ok", "--host", "h", "--template", str(etc.parent / "missing.toml")], "template"),
    ):
        code, _, err = _cli(capsys, "edge", "provision", "--etc", str(etc), *args)
        assert code == 2 and "ProvisionError" in err and message in err, (args, err)
    garbage = etc.parent / "garbage.toml"
    example = (REPO_ROOT / "deploy/agent.example.toml").read_text()
    garbage.write_text(example.replace("[agent]\n", "[agent]\nbogus_key = 1\n", 1))
    code, _, err = _cli(capsys, "edge", "provision", "--etc", str(etc), "--id", "ok", "--host", "h",
                        "--template", str(garbage))
    assert code == 2 and "bogus_key" in err, err
    assert not (etc / "pki/device.key").exists()
    # A key is never silently replaced.
    assert _cli(capsys, "edge", "provision", "--etc", str(etc), "--id", "ok", "--host", "h")[0] == 0
    code, _, err = _cli(capsys, "edge", "provision", "--etc", str(etc), "--id", "ok", "--host", "h")
    assert code == 2 and "--force" in err
    # A certificate for another device's key or name is refused by install-cert.
    other = cloud_etc / "pki/devices/other-device.crt"
    code, _, err = _cli(capsys, "edge", "install-cert", "--etc", str(etc), "--cert", str(other),
                        "--ca-file", str(cloud_etc / "pki/ca.crt"))
    assert code == 2 and "other-device" in err
    garbage_cert = etc.parent / "garbage.crt"
    garbage_cert.write_bytes(os.urandom(300))
    code, _, err = _cli(capsys, "edge", "install-cert", "--etc", str(etc), "--cert", str(garbage_cert),
                        "--ca-file", str(cloud_etc / "pki/ca.crt"))
    assert code == 2 and "not a PEM certificate" in err


def test_signing_refuses_a_csr_for_another_name_or_garbage(migrated_db: str, cloud_etc: Path,
                                                           device_etc: Callable[[str], Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    etc = device_etc("csr")
    _provision(capsys, etc)
    out = cloud_etc / "x.crt"
    base = ["cloud", "devices", "add", "--dsn", migrated_db, "--ca-dir", str(cloud_etc / "pki"),
            "--cert-out", str(out)]
    code, _, err = _cli(capsys, *base, "--id", "someone-else", "--csr", str(etc / "pki/device.csr"))
    assert code == 2 and "common name" in err
    garbage = etc / "garbage.csr"
    garbage.write_bytes(os.urandom(500))
    code, _, err = _cli(capsys, *base, "--id", DEVICE, "--csr", str(garbage))
    assert code == 2 and "certificate request" in err
    code, _, err = _cli(capsys, "cloud", "devices", "add", "--dsn", migrated_db, "--id", DEVICE,
                        "--csr", str(etc / "pki/device.csr"))
    assert code == 2 and "--ca-dir" in err
    assert not out.exists()
    index = (cloud_etc / "pki/ca-db/index.txt").read_text()
    assert DEVICE not in index, "nothing was signed"
    # Registering twice is refused before a second certificate is signed.
    assert _cli(capsys, *base, "--id", DEVICE, "--csr", str(etc / "pki/device.csr"))[0] == 0
    code, _, err = _cli(capsys, *base, "--id", DEVICE, "--csr", str(etc / "pki/device.csr"))
    assert code == 2 and "replace" in err
    assert (cloud_etc / "pki/ca-db/index.txt").read_text().count(f"CN={DEVICE}") == 1
