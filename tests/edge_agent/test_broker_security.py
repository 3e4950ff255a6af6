"""The shipped broker config against a real mosquitto: services apart from devices, modern TLS only,
and revoked certificates refused after a reload (docs/security.md)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil.services import MosquittoBroker
from hil.testpki import make_test_etc
from lienwatch.cli import main
from tests.edge_agent.conftest import DEVICE_A, INGEST, SERVICE_PORT, SHIPPED_CONF, Pki, Receiver, wait_until

DEVICE_PORT = 8883
REVOKED = "veh-stolen"
GOOD_SUITE = "ECDHE-ECDSA-AES128-GCM-SHA256"
WEAK_SUITES = ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256")


@pytest.fixture(scope="module")
def own_pki() -> Iterator[Pki]:
    """A PKI of this module's own (its tests issue and revoke certificates), with an impostor: a
    certificate from the DEVICE CA whose CN is the receiver's service name."""
    root = make_test_etc(Path(tempfile.mkdtemp(prefix="lienwatch-sec-pki-")), [DEVICE_A, REVOKED])
    pki = root / "pki"
    (root / "client.ext").write_text("basicConstraints=critical,CA:FALSE\n"
                                     "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    (pki / "impostor").mkdir(mode=0o755)
    key, csr, cert = pki / "impostor/key.pem", root / "impostor.csr", pki / "impostor/cert.pem"
    for args in (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
                 ["req", "-new", "-key", str(key), "-subj", f"/CN={INGEST}", "-out", str(csr)],
                 ["ca", "-batch", "-config", str(pki / "ca-db/openssl.cnf"), "-in", str(csr),
                  "-extfile", str(root / "client.ext"), "-notext", "-out", str(cert)]):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    yield Pki(root)
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture
def broker(own_pki: Pki, broker_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    return broker_factory(SHIPPED_CONF, path_map={"/etc/lienwatch/": f"{own_pki.etc}/"})


def _context(pki: Pki, cert: Path, key: Path, *, suites: str | None = None,
             tls12: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.ca)
    context.load_cert_chain(cert, key)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if suites is not None:
        context.set_ciphers(suites)
    return context


def _mqtt_connack(port: int, context: ssl.SSLContext) -> tuple[str, int] | None:
    """TLS handshake, then an MQTT 3.1.1 CONNECT; returns (negotiated suite, CONNACK code), or None
    when the broker refused the handshake or the client certificate (TLS 1.3 reports that only
    after the handshake, on the first read). Raw sockets, not paho: they show which step failed."""
    connect = b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06probe1"  # clean session, keepalive 60
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            suite = tls.cipher()
            tls.sendall(connect)
            connack = tls.recv(4)
    except (ssl.SSLError, ConnectionError):
        return None
    if len(connack) < 4 or connack[0] != 0x20 or suite is None:
        return None
    return suite[0], connack[3]


class _Client:
    """A paho client of the given certificate that records what it receives."""

    def __init__(self, pki: Pki, port: int, cert: Path, key: Path, name: str) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(pki.ca), certfile=str(cert), keyfile=str(key))
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        granted: list[int] = []
        connected: list[bool] = []
        self.client.on_connect = lambda c, u, f, rc, p: connected.append(not rc.is_failure)
        self.client.on_subscribe = lambda c, u, mid, codes, p: granted.extend(int(x.value) for x in codes)
        self.granted = granted
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert wait_until(lambda: bool(connected), 10) and connected[0], f"{name} could not connect"

    def subscribe(self, topic: str) -> int:
        before = len(self.granted)
        self.client.subscribe(topic, qos=1)
        assert wait_until(lambda: len(self.granted) > before, 10)
        return self.granted[-1]

    def payloads(self) -> list[bytes]:
        return [payload for _, payload in list(self.got)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_device_certificate_named_like_a_service_gets_no_service_rights(
        own_pki: Pki, broker: MosquittoBroker) -> None:
    impostor_cert, impostor_key = own_pki.etc / "pki/impostor/cert.pem", own_pki.etc / "pki/impostor/key.pem"
    # The service listener trusts only the service CA: the impostor does not even connect there,
    # while the real receiver certificate does, and a service certificate is no device either.
    service = _context(own_pki, *own_pki.cert(INGEST, "services"))
    assert _mqtt_connack(broker.ports[SERVICE_PORT], _context(own_pki, impostor_cert, impostor_key)) is None
    assert _mqtt_connack(broker.ports[SERVICE_PORT], service) is not None
    assert _mqtt_connack(broker.ports[DEVICE_PORT], service) is None

    # On the device listener it is only a device called lienwatch-ingest: it reads no uplink and
    # writes no downlink, while the real receiver (service listener) sees and does both.
    receiver = Receiver(own_pki, broker, "lienwatch/v1/+/up/#")
    impostor = _Client(own_pki, broker.ports[DEVICE_PORT], impostor_cert, impostor_key, "impostor")
    device = _Client(own_pki, broker.ports[DEVICE_PORT], *own_pki.cert(DEVICE_A), DEVICE_A)
    try:
        # mosquitto 2.0 grants any subscription and applies the ACL per delivered message.
        impostor.subscribe("lienwatch/v1/+/up/#")
        device.subscribe(f"lienwatch/v1/{DEVICE_A}/down/#")
        impostor.client.publish(f"lienwatch/v1/{DEVICE_A}/down/command", b"forged command",
                                qos=1).wait_for_publish(5)
        device.client.publish(f"lienwatch/v1/{DEVICE_A}/up/event", b"uplink", qos=1).wait_for_publish(5)
        receiver.client.publish(f"lienwatch/v1/{DEVICE_A}/down/command", b"real command",
                                qos=1).wait_for_publish(5)
        assert wait_until(lambda: b"uplink" in receiver.payloads(), 10)
        assert wait_until(lambda: b"real command" in device.payloads(), 10)
        time.sleep(0.3)
        assert impostor.payloads() == []
        assert b"forged command" not in device.payloads()
    finally:
        for client in (impostor, device):
            client.close()
        receiver.close()


@pytest.mark.parametrize("listener", [DEVICE_PORT, SERVICE_PORT])
def test_only_aead_ecdhe_suites_and_tls_1_2_or_later_are_accepted(
        listener: int, own_pki: Pki, broker: MosquittoBroker) -> None:
    cert, key = own_pki.cert(DEVICE_A) if listener == DEVICE_PORT else own_pki.cert(INGEST, "services")
    port = broker.ports[listener]
    for weak in WEAK_SUITES:
        context = _context(own_pki, cert, key, suites=weak, tls12=True)
        offered = [c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"]
        assert offered == [weak]  # the client does offer it
        assert _mqtt_connack(port, context) is None, f"{weak} was accepted"
    assert _mqtt_connack(port, _context(own_pki, cert, key, suites=GOOD_SUITE, tls12=True)) == (GOOD_SUITE, 0)
    suite, code = _mqtt_connack(port, _context(own_pki, cert, key)) or ("", -1)
    assert suite.startswith("TLS_") and code == 0  # TLS 1.3 by default
    old = _context(own_pki, cert, key)
    with warnings.catch_warnings():  # the client side may still offer TLS 1.1 here: the broker must not
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    assert _mqtt_connack(port, old) is None


def test_a_revoked_device_is_refused_after_reload_while_another_connects(
        own_pki: Pki, broker: MosquittoBroker, capsys: pytest.CaptureFixture[str]) -> None:
    stolen, good = _context(own_pki, *own_pki.cert(REVOKED)), _context(own_pki, *own_pki.cert(DEVICE_A))
    port = broker.ports[DEVICE_PORT]
    assert _mqtt_connack(port, stolen) is not None and _mqtt_connack(port, good) is not None
    pidfile = own_pki.etc / "mosquitto.pid"
    pidfile.write_text(f"{broker.process.pid}\n")

    code = main(["cloud", "pki", "revoke", "--ca-dir", str(own_pki.etc / "pki"), "--reason", "keyCompromise",
                 "--reload-pidfile", str(pidfile), str(own_pki.cert(REVOKED)[0])])
    out = capsys.readouterr().out
    assert code == 0 and "revoked" in out and f"CN={REVOKED}" in out and "SIGHUP" in out
    assert wait_until(lambda: _mqtt_connack(port, stolen) is None, 10, step_s=0.2), "still accepted"
    assert _mqtt_connack(port, good) is not None
    # The revocation survives a broker restart (the CRL is a file, not broker state).
    broker.stop(remove=False)
    broker.restart()
    assert _mqtt_connack(port, stolen) is None and _mqtt_connack(port, good) is not None
