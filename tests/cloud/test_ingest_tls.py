"""The receiver over mutual TLS to mosquitto started from the shipped production config and ACL."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import protocol
from cloud.config import TlsConfig
from cloud.ingest.receiver import Receiver
from cloud.store.db import Conn
from hil.services import REPO_ROOT, MosquittoBroker
from hil.testpki import make_test_etc
from tests.cloud.conftest import register
from tests.cloud.helpers import receiver_config, telemetry, topic_of
from tests.cloud.test_ingest import count, wait_for

DEVICE = "veh-tls"


@pytest.fixture(scope="module")
def pki_dir() -> Iterator[Path]:
    root = make_test_etc(Path(tempfile.mkdtemp(prefix="lienwatch-cloud-pki-")), [DEVICE])
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _device_client(pki: Path, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(pki / "pki/ca.crt"), certfile=str(pki / f"pki/devices/{DEVICE}.crt"),
                   keyfile=str(pki / f"pki/devices/{DEVICE}.key"))
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10), "device could not connect over TLS"
    return client


def test_receiver_ingests_over_mutual_tls_through_the_production_acl(
    migrated_db: str, db: Conn, pki_dir: Path, broker_factory: Callable[..., MosquittoBroker]
) -> None:
    broker = broker_factory(REPO_ROOT / "deploy/mosquitto/lienwatch.conf",
                            path_map={"/etc/lienwatch/": f"{pki_dir}/"})
    register(db, DEVICE)
    tls = TlsConfig(ca_file=str(pki_dir / "pki/ca.crt"),
                    cert_file=str(pki_dir / "pki/services/lienwatch-ingest.crt"),
                    key_file=str(pki_dir / "pki/services/lienwatch-ingest.key"))
    base = receiver_config(migrated_db, broker.ports[8884], "lienwatch-ingest", group="tls")
    receiver = Receiver(replace(base, mqtt=replace(base.mqtt, tls=tls, insecure_plaintext=False)))
    receiver.start()
    device = _device_client(pki_dir, broker.port)
    try:
        messages = [telemetry(DEVICE, seq, samples=25, fixes=2) for seq in range(5)]
        for message in messages:
            device.publish(topic_of(message), protocol.encode(message), qos=1).wait_for_publish(10)
        wait_for(lambda: count(db, "signal_samples") == 125, what="rows over TLS")
        assert count(db, "positions") == 10
    finally:
        device.disconnect()
        device.loop_stop()
        receiver.stop()


def test_receiver_without_a_client_certificate_is_refused(
    migrated_db: str, pki_dir: Path, broker_factory: Callable[..., MosquittoBroker]
) -> None:
    broker = broker_factory(REPO_ROOT / "deploy/mosquitto/lienwatch.conf",
                            path_map={"/etc/lienwatch/": f"{pki_dir}/"})
    base = receiver_config(migrated_db, broker.ports[8884], "lienwatch-ingest", group="tls")
    no_client_cert = TlsConfig(ca_file=str(pki_dir / "pki/ca.crt"))
    receiver = Receiver(replace(base, mqtt=replace(base.mqtt, tls=no_client_cert, insecure_plaintext=False)))
    with pytest.raises(ConnectionError):
        receiver.start(connect_timeout_s=3)
