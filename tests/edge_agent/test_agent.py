"""The whole agent against the TLS broker: telemetry and events out, signed commands in."""

from __future__ import annotations

import io
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.agent.config import AgentConfig
from edge.agent.runtime import Agent
from edge.agent.watchdog import Notifier
from edge.detect.base import Detector, Finding, Observation
from edge.sources.base import SampleSink, Source
from hil.services import MosquittoBroker
from lienwatch.cli import main
from lienwatch.clock import Clock, SystemClock
from protocol import decode, encode
from protocol.catalog import default_catalog
from protocol.messages import (
    AckStatus,
    Command,
    CommandAck,
    Config,
    Event,
    Reboot,
    RequestPosition,
    SetConfig,
    Severity,
    TelemetryBatch,
)
from protocol.signing import PrivateKey, generate_key, public_key_to_pem, sign_command
from protocol.topics import command_topic
from tests.edge_agent.conftest import DEVICE_A, DEVICE_B, Pki, Receiver, wait_until

pytestmark = pytest.mark.services

SPEED = default_catalog().id_of("Vehicle.Speed")


class RampSource(Source):
    """A tiny real source for tests: Vehicle.Speed rising by 1 km/h per poll, every 10 ms."""

    kind = "ramp"

    def __init__(self, clock: Clock) -> None:
        super().__init__("ramp", clock)
        self.speed = 0.0

    def open(self) -> None:
        pass

    def poll(self, sink: SampleSink) -> float:
        self.speed += 1.0
        self.emit(sink, SPEED, self.speed)
        return 0.01

    def close(self) -> None:
        pass


class OverSpeed(Detector):
    """A test double of a detector: one ALERT the first time Vehicle.Speed exceeds a limit."""

    kind = "overspeed-test"

    def __init__(self, limit_kmh: float) -> None:
        super().__init__("overspeed-test")
        self.limit_kmh = limit_kmh
        self.fired = False

    def observe(self, observation: Observation) -> Sequence[Finding]:
        latest = observation.latest(SPEED)
        if self.fired or latest is None or latest.value <= self.limit_kmh:
            return ()
        self.fired = True
        return (Finding("overspeed-test", Severity.ALERT, observation.wall_ns,
                        {"speed_kmh": latest.value}, "speed above the test limit"),)


@dataclass
class Setup:
    config: AgentConfig
    key: PrivateKey
    tmp: Path


def write_config(tmp: Path, pki: Pki, broker: MosquittoBroker, key: PrivateKey,
                 device: str = DEVICE_A, **sections: dict[str, object]) -> Path:
    keys = tmp / "command-keys.pem"
    keys.write_bytes(public_key_to_pem(key.public_key()))
    cert, private = pki.cert(device)
    document: dict[str, dict[str, object]] = {
        "device": {"id": device},
        "agent": {"state_dir": str(tmp / "state"), "status_file": str(tmp / "run/status.json"),
                  "status_interval_s": 0.1, "tick_s": 0.02},
        "uplink.mqtt": {"host": "127.0.0.1", "port": broker.port, "ca_file": str(pki.ca),
                        "cert_file": str(cert), "key_file": str(private), "reconnect_min_s": 0.05,
                        "reconnect_max_s": 0.3, "connect_timeout_s": 5.0},
        "uplink.telemetry": {"batch_interval_s": 1.0, "sample_period_s": 0.05},
        "uplink.queue": {"sync_interval_s": 0.5},
        "downlink": {"command_keys": str(keys)},
    }
    for name, values in sections.items():
        document.setdefault(name.replace("__", "."), {}).update(values)
    lines = []
    for section, values in document.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
    path = tmp / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def setup(tmp_path: Path, pki: Pki, tls_broker: MosquittoBroker) -> Setup:
    key = generate_key()
    path = write_config(tmp_path, pki, tls_broker, key)
    from edge.agent.config import load_config
    return Setup(load_config(path), key, tmp_path)


@pytest.fixture
def running(setup: Setup) -> Iterator[tuple[Agent, threading.Event]]:
    agent = Agent(setup.config, sources=[RampSource(SystemClock())], detectors=[OverSpeed(30.0)])
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    assert wait_until(lambda: agent.link.subscribed, 10), agent.link.last_error
    yield agent, stop
    stop.set()
    thread.join(15)
    assert not thread.is_alive()


def decoded(receiver: Receiver, kind: type) -> list:  # type: ignore[type-arg]
    out = []
    for _, payload in list(receiver.messages):
        message = decode(payload)
        if isinstance(message, kind):
            out.append(message)
    return out


def test_samples_become_telemetry_and_findings_become_events(
        setup: Setup, pki: Pki, tls_broker: MosquittoBroker,
        running: tuple[Agent, threading.Event]) -> None:
    receiver = Receiver(pki, tls_broker, "lienwatch/v1/+/up/#")
    _agent, stop = running
    try:
        assert wait_until(lambda: bool(decoded(receiver, Event) and decoded(receiver, TelemetryBatch)), 15)
        (event,) = [e for e in decoded(receiver, Event) if e.detector == "overspeed-test"]
        assert event.severity == Severity.ALERT and event.features["speed_kmh"] > 30
        assert event.header.device_id == DEVICE_A
        batch = decoded(receiver, TelemetryBatch)[0]
        assert set(batch.samples.signal_id) == {SPEED}
        # uplink.telemetry.deflate (default on): the bytes sent are the deflate-if-smaller encoding
        raw = next(p for _, p in list(receiver.messages) if isinstance(decode(p), TelemetryBatch))
        assert raw == encode(batch, deflate=True)
        times = batch.samples.time_ns
        assert all(b - a >= 49_000_000 for a, b in itertools.pairwise(times))  # decimated
        # the status command reads what the running agent writes
        output = io.StringIO()
        with redirect_stdout(output):
            code = main(["edge", "status", "--status-file", str(setup.tmp / "run/status.json")])
        assert code == 0, output.getvalue()
        text = output.getvalue()
        assert "link       connected" in text and "source     ramp" in text and "queue      depth" in text
        stop.set()
        assert wait_until(lambda: json.loads((setup.tmp / "run/status.json").read_text()).get("stopped"), 15)
        status = json.loads((setup.tmp / "run/status.json").read_text())
        # Graceful shutdown flushed the last batch (the test's plain subscriber sends no receipts:
        # delivered records wait on flash for a receipt or the fallback timeout).
        assert status["queue"]["depth"] == status["queue"]["delivered_unconfirmed"]
        assert status["queue"]["in_flight"] == 0
        kept = status["telemetry"]["samples_kept"]
        assert wait_until(lambda: sum(len(b.samples) for b in decoded(receiver, TelemetryBatch)) >= kept, 5)
    finally:
        receiver.close()


class Cloud:
    """Signs commands, publishes them to a device and collects the acks."""

    def __init__(self, setup: Setup, pki: Pki, broker: MosquittoBroker) -> None:
        self.key = setup.key
        self.receiver = Receiver(pki, broker, f"lienwatch/v1/{DEVICE_A}/up/ack")

    def command(self, action: object, *, target: str = DEVICE_A, lifetime_s: float = 60,
                issued_offset_s: float = 0, nonce: bytes | None = None) -> Command:
        now = time.time_ns() + int(issued_offset_s * 1e9)
        return Command(target, nonce or os.urandom(16), now, now + int(lifetime_s * 1e9), action)  # type: ignore[arg-type]

    def send(self, payload: bytes) -> None:
        self.receiver.client.publish(command_topic(DEVICE_A), payload, qos=1).wait_for_publish(5)

    def ack_for(self, nonce: bytes, timeout_s: float = 10) -> CommandAck:
        def find() -> CommandAck | None:
            for message in decoded(self.receiver, CommandAck):
                if message.nonce == nonce:
                    return message  # type: ignore[no-any-return]
            return None
        assert wait_until(lambda: find() is not None, timeout_s), f"no ack for {nonce.hex()}"
        ack = find()
        assert ack is not None
        return ack


def test_commands_are_verified_executed_and_refused_with_distinct_reasons(
        setup: Setup, pki: Pki, tls_broker: MosquittoBroker,
        running: tuple[Agent, threading.Event]) -> None:
    agent, _ = running
    cloud = Cloud(setup, pki, tls_broker)
    try:
        # A good SetConfig: validated, persisted, in effect, acknowledged DONE.
        good = cloud.command(SetConfig(Config(7, {"uplink.telemetry.batch_interval_s": 5.0})))
        signed = encode(sign_command(good, setup.key))
        cloud.send(signed)
        ack = cloud.ack_for(good.nonce)
        assert ack.status == AckStatus.DONE, ack.detail
        assert agent.config["uplink.telemetry.batch_interval_s"] == 5.0
        assert agent.batcher.settings.batch_interval_s == 5.0
        stored = json.loads((setup.tmp / "state/remote_config.json").read_text())
        assert stored == {"version": 7, "settings": {"uplink.telemetry.batch_interval_s": 5.0}}

        refusals: dict[str, Command] = {}
        # Replayed: the very same signed bytes again.
        cloud.send(signed)
        refusals["ReplayedCommandError"] = good
        # Forged: signed by a key the device does not trust.
        forged = cloud.command(RequestPosition())
        cloud.send(encode(sign_command(forged, generate_key())))
        refusals["BadSignatureError"] = forged
        # Expired.
        expired = cloud.command(RequestPosition(), issued_offset_s=-120, lifetime_s=60)
        cloud.send(encode(sign_command(expired, setup.key)))
        refusals["ExpiredCommandError"] = expired
        # Addressed to another device (but published on ours).
        other = cloud.command(RequestPosition(), target=DEVICE_B)
        cloud.send(encode(sign_command(other, setup.key)))
        refusals["WrongAddresseeError"] = other
        # Unsigned.
        unsigned = cloud.command(RequestPosition())
        cloud.send(encode(unsigned))  # a bare Command travels without a signature
        refusals["UnsignedCommandError"] = unsigned
        # A setting that may not be changed remotely.
        not_remote = cloud.command(SetConfig(Config(8, {"uplink.mqtt.host": "evil.example"})))
        cloud.send(encode(sign_command(not_remote, setup.key)))

        seen = {}
        for reason, command in refusals.items():
            if reason == "ReplayedCommandError":
                assert wait_until(lambda: sum(1 for m in decoded(cloud.receiver, CommandAck)
                                              if m.nonce == good.nonce) == 2, 10)
                ack = [m for m in decoded(cloud.receiver, CommandAck) if m.nonce == good.nonce][1]
            else:
                ack = cloud.ack_for(command.nonce)
            assert ack.status == AckStatus.REJECTED
            assert ack.detail.startswith(reason + ":"), (reason, ack.detail)
            seen[reason] = ack.detail
        assert len(set(seen.values())) == len(seen)  # distinct reasons
        ack = cloud.ack_for(not_remote.nonce)
        assert ack.status == AckStatus.REJECTED and "cannot be changed remotely" in ack.detail
        assert agent.config["uplink.telemetry.batch_interval_s"] == 5.0  # unchanged by refusals

        # Garbage on the command topic: counted, never acked, never fatal.
        cloud.send(b"\x00garbage")
        assert wait_until(lambda: sum(agent.commands.refused.values()) >= 6, 5)
        assert agent.commands.executed == 2  # verified: the good one and the not-remote one
        assert set(agent.commands.refused) >= {"ReplayedCommandError", "BadSignatureError",
                                               "ExpiredCommandError", "WrongAddresseeError",
                                               "UnsignedCommandError"}
    finally:
        cloud.receiver.close()


def test_replay_cache_survives_a_restart(setup: Setup, pki: Pki, tls_broker: MosquittoBroker) -> None:
    cloud = Cloud(setup, pki, tls_broker)
    command = cloud.command(SetConfig(Config(1, {"agent.log_level": "debug"})))
    signed = encode(sign_command(command, setup.key))
    try:
        for expected in (AckStatus.DONE, AckStatus.REJECTED):
            agent = Agent(setup.config, sources=[], detectors=[])
            stop = threading.Event()
            thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
            thread.start()
            assert wait_until(lambda a=agent: a.link.subscribed, 10)  # type: ignore[misc]
            cloud.send(signed)
            assert wait_until(lambda e=expected: any(  # type: ignore[misc]
                m.nonce == command.nonce and m.status == e for m in decoded(cloud.receiver, CommandAck)), 10)
            stop.set()
            thread.join(15)
        # The applied remote config came back after the restart, too.
        assert Agent(setup.config, sources=[], detectors=[]).config["agent.log_level"] == "debug"
    finally:
        cloud.receiver.close()


class FailingSwapAgent(Agent):
    """Test double: a config whose batch interval is 13 s "fails to start"."""

    def _swap(self, cfg: AgentConfig) -> None:
        super()._swap(cfg)
        if cfg["uplink.telemetry.batch_interval_s"] == 13.0:
            raise RuntimeError("telemetry did not come up")


def test_a_config_that_fails_to_start_is_rolled_back(setup: Setup) -> None:
    agent = FailingSwapAgent(setup.config, sources=[], detectors=[])
    try:
        ok = agent.apply_remote_config(SetConfig(Config(2, {"uplink.telemetry.batch_interval_s": 9.0})))
        assert ok.status == AckStatus.DONE
        bad = agent.apply_remote_config(SetConfig(Config(3, {"uplink.telemetry.batch_interval_s": 13.0})))
        assert bad.status == AckStatus.FAILED and "previous config restored" in bad.detail
        assert agent.config["uplink.telemetry.batch_interval_s"] == 9.0
        assert agent.batcher.settings.batch_interval_s == 9.0
        stored = json.loads((setup.tmp / "state/remote_config.json").read_text())
        assert stored["version"] == 2
        assert not (setup.tmp / "state/remote_config.new").exists()
        stale = agent.apply_remote_config(SetConfig(Config(1, {"agent.log_level": "error"})))
        assert stale.status == AckStatus.REJECTED
    finally:
        agent.shutdown(flush_timeout_s=0)


def test_reboot_command_acks_then_exits_75(setup: Setup, pki: Pki, tls_broker: MosquittoBroker) -> None:
    cloud = Cloud(setup, pki, tls_broker)
    agent = Agent(setup.config, sources=[], detectors=[])
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: agent.link.subscribed, 10)
        command = cloud.command(Reboot())
        cloud.send(encode(sign_command(command, setup.key)))
        assert cloud.ack_for(command.nonce).status == AckStatus.DONE
        thread.join(15)
        assert result == [75]
    finally:
        cloud.receiver.close()


def test_watchdog_pings_reach_the_notify_socket(setup: Setup, tmp_path: Path) -> None:
    import socket
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        notifier = Notifier(environ={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
        agent = Agent(setup.config, sources=[], detectors=[], notifier=notifier)
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        messages = [server.recv(4096).decode() for _ in range(4)]
        stop.set()
        thread.join(15)
    assert messages[0].startswith("READY=1")
    assert messages[1:] == ["WATCHDOG=1"] * 3


class Garbage(Source):
    """A misbehaving source: a good speed, a NaN, an id no catalog knows, an absurd value."""

    kind = "garbage"

    def open(self) -> None:
        pass

    def poll(self, sink: SampleSink) -> float:
        for signal_id, value in ((SPEED, 50.0), (SPEED + 1, float("nan")), (65000, 1.0), (SPEED + 2, 1e300)):
            self.emit(sink, signal_id, value)
        return 1.0

    def close(self) -> None:
        pass


class Broken(Detector):
    """Test doubles of buggy detectors: one raises, one reports unencodable evidence."""

    def __init__(self, name: str, raises: bool) -> None:
        super().__init__(name)
        self.raises = raises

    def observe(self, observation: Observation) -> Sequence[Finding]:
        if self.raises:
            raise ZeroDivisionError("bug")
        return (Finding(self.name, Severity.EMERGENCY, observation.wall_ns, {"x": float("nan")}, "odd"),)


def test_bad_samples_and_buggy_detectors_never_stop_the_agent(setup: Setup) -> None:
    clock = SystemClock()
    source = Garbage("garbage", clock)
    agent = Agent(setup.config, sources=[source], detectors=[Broken("raises", True), Broken("nan", False)])
    try:
        source.poll(agent.inbox.put)
        agent.step()
        agent.step()
        batch = agent.batcher.take()
        assert batch is not None
        agent._queue_telemetry(*batch)
        records = agent.outbox.begin(100)
        kinds = [decode(r.payload) for r in records]
        events = [k for k in kinds if isinstance(k, Event)]
        assert events and all(e.severity == Severity.EMERGENCY and "evidence dropped" in e.detail
                              for e in events)
        (telemetry,) = [k for k in kinds if isinstance(k, TelemetryBatch)]
        assert telemetry.samples.signal_id == (SPEED,) and telemetry.samples.value == (50.0,)
        assert agent.telemetry_refused == 3
        assert agent.errors["detector_errors"] == {"raises": 2}
        status = agent.status()
        assert status["telemetry_refused_samples"] == 3 and "encode_errors" in status["errors"]
    finally:
        agent.shutdown(flush_timeout_s=0)


@pytest.fixture
def early_receiver(pki: Pki, tls_broker: MosquittoBroker) -> Iterator[Receiver]:
    """A receiver subscribed before the agent starts (request it before `running`): it sees the
    heartbeat the agent sends as soon as it connects."""
    receiver = Receiver(pki, tls_broker, "lienwatch/v1/+/up/#")
    yield receiver
    receiver.close()


def test_everything_the_agent_sends_passes_the_cloud_receivers_validation(
        setup: Setup, pki: Pki, tls_broker: MosquittoBroker, early_receiver: Receiver,
        running: tuple[Agent, threading.Event]) -> None:
    """The contract with cloud/ingest: telemetry, events, heartbeats, acks and the last will are
    all accepted by the receiver's own validator (topic, decoding, device id, time ranges)."""
    from cloud.ingest.validate import Accepted, Incoming, Validator

    agent, _ = running
    receiver = early_receiver
    cloud = Cloud(setup, pki, tls_broker)
    try:
        command = cloud.command(RequestPosition())
        cloud.send(encode(sign_command(command, setup.key)))
        kinds = {"telemetry", "event", "status", "ack"}
        assert wait_until(lambda: {t.rsplit("/", 1)[1] for t, _ in receiver.messages} >= kinds, 15), \
            {t for t, _ in receiver.messages}
        validator = Validator(lambda device: device == DEVICE_A, lambda table: 0, 3600 * 10**9,
                              time.time_ns)
        messages = [*receiver.messages, (f"lienwatch/v1/{DEVICE_A}/up/event", agent._will_payload())]
        for mid, (topic, payload) in enumerate(messages):
            outcome = validator.check(Incoming(topic, payload, mid, 1, time.time_ns()))
            assert isinstance(outcome, Accepted), (topic, outcome)
    finally:
        cloud.receiver.close()
