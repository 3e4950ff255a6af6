"""The MQTT 5 link: mutual TLS, persistent session, QoS 1, reconnect with backoff and jitter.

`MqttLink` owns one paho-mqtt client and one network thread. That thread is the only one that
calls into paho (connect, read, write, publish, subscribe), so no paho call ever races another.
paho's callbacks run on it too and only put `LinkEvent`s on `events` — the agent's own thread does
all the work (flash reads, commits, command checks). Requests go the other way through `publish`,
which enqueues and wakes the thread through a socket pair: the thread waits in one select() on
the broker's socket and that pair (paho's external-loop API: `loop_read`, `loop_write`,
`loop_misc`), so a publish leaves at once and an idle link wakes about once a second.

Reconnects use exponential backoff with full jitter (`backoff_s`), so a fleet that lost the same
cell tower does not return in lock step; `kick()` ends the current wait at once (an ALERT or
EMERGENCY was queued: it must not wait for the backoff).
"""

from __future__ import annotations

import contextlib
import queue
import random
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from lienwatch.backoff import backoff_s as backoff_s  # re-exported: the agent's reconnect delays
from lienwatch.clock import Clock, SystemClock
from lienwatch.tls import check_tls_files


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and how to connect (see deploy/agent.example.toml, [uplink.mqtt])."""

    host: str
    port: int
    client_id: str  # the device id; must equal the certificate's CN (the broker's username)
    ca_file: Path
    cert_file: Path
    key_file: Path
    keepalive_s: int = 240
    session_expiry_s: int = 7 * 86_400
    inflight_window: int = 16
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    connect_timeout_s: float = 30.0
    will_topic: str | None = None
    will_payload: bytes = b""
    will_factory: Callable[[], bytes] | None = None  # a fresh will per connect (new header seq)
    will_retain: bool = False
    will_delay_s: int = 60
    subscribe_topics: tuple[str, ...] = ()
    loop_interval_s: float = 1.0  # longest idle wait of the network thread (keepalive, CONNACK timer)

    def check_files(self) -> None:
        """The CA, certificate and key load as ssl will load them (ConfigError naming the key)."""
        check_tls_files(*((f"uplink.mqtt.{name}", getattr(self, name))
                          for name in ("ca_file", "cert_file", "key_file")))


# --- events the link reports (put on `MqttLink.events`, read by the agent's thread) ----------


@dataclass(frozen=True, slots=True)
class Connected:
    session_present: bool


@dataclass(frozen=True, slots=True)
class ConnectRefused:
    """The broker or the TLS layer refused us; `reason` says which and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class Published:
    """The broker acknowledged (PUBACK) the publish tagged `token`; `ok` False = failure code."""

    token: int
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    topic: str
    payload: bytes


LinkEvent = Connected | ConnectRefused | Disconnected | Published | MessageReceived


class MqttLink:
    """A paho client on a network thread of its own; all results arrive as `events`."""

    def __init__(self, settings: MqttSettings, clock: Clock | None = None,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.events: queue.SimpleQueue[LinkEvent] = queue.SimpleQueue()
        self._requests: queue.SimpleQueue[tuple[int, str, bytes, int]] = queue.SimpleQueue()
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._mid_to_token: dict[int, int] = {}
        self._connected = False
        self._socket_open = False
        self._awaiting_connack_since_ns: int | None = None
        self._needs_subscribe = False
        self._subacks_pending = 0
        self.state = "disconnected"
        self.last_error = ""
        self.connects = 0
        self.attempts = 0
        self._client = self._make_client()

    # ------------------------------------------------------------------ the agent's side

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect cleanly (the broker then discards the will) and end the thread."""
        self._stop.set()
        self._kick.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def kick(self) -> None:
        """Reconnect now if the link is waiting out a backoff delay."""
        self._kick.set()
        self._wake()

    def publish(self, token: int, topic: str, payload: bytes, qos: int = 1) -> None:
        """Ask for a publish. QoS 1: a `Published(token)` event follows the PUBACK. QoS 0: none."""
        self._requests.put((token, topic, payload, qos))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is already pending
            self._wake_w.send(b"\0")

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        """Connected and every downlink subscription confirmed by the broker (SUBACK)."""
        return self._connected and not self._needs_subscribe and self._subacks_pending == 0

    # ------------------------------------------------------------------ paho set-up

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(s.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(s.cert_file), str(s.key_file))
        client.tls_set_context(context)  # the pinned CA only; hostname checked against the SAN
        client.connect_timeout = s.connect_timeout_s
        client.max_inflight_messages_set(s.inflight_window)
        client.max_queued_messages_set(0)
        self._set_will(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _set_will(self, client: mqtt.Client) -> None:
        s = self.settings
        if s.will_topic is None:
            return
        payload = s.will_factory() if s.will_factory is not None else s.will_payload
        will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
        will_props.WillDelayInterval = s.will_delay_s
        client.will_set(s.will_topic, payload, qos=1, retain=s.will_retain, properties=will_props)

    # paho callbacks: only record and enqueue.

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        self._awaiting_connack_since_ns = None
        if reason.is_failure:
            self.last_error = f"CONNACK refused: {reason}"
            self.events.put(ConnectRefused(self.last_error))
            return
        self._connected = True
        self._needs_subscribe = True
        self._subacks_pending = len(self.settings.subscribe_topics)
        self.events.put(Connected(bool(flags.session_present)))

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        if any(reason.is_failure for reason in reasons):
            self.last_error = f"SUBACK refused: {', '.join(str(r) for r in reasons)}"
            return
        self._subacks_pending = max(0, self._subacks_pending - 1)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        was_connected, self._connected = self._connected, False
        was_open, self._socket_open = self._socket_open, False
        self._awaiting_connack_since_ns = None
        self.state = "disconnected"
        if was_connected:
            self.last_error = f"disconnected: {reason}"
            self.events.put(Disconnected(str(reason)))
        elif was_open:
            # A TLS refusal after the handshake (TLS 1.3 checks the client certificate late) lands
            # here: the broker closed the socket before any CONNACK.
            self.last_error = f"connection closed before CONNACK: {reason}"
            self.events.put(ConnectRefused(self.last_error))

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        token = self._mid_to_token.pop(mid, None)
        if token is not None:
            self.events.put(Published(token, not reason.is_failure, str(reason)))

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.events.put(MessageReceived(message.topic, bytes(message.payload)))

    # ------------------------------------------------------------------ the network thread

    def _run(self) -> None:
        attempt = 0
        try:
            while not self._stop.is_set():
                if not self._socket_open:
                    if attempt > 0:
                        delay = backoff_s(attempt, self.settings.reconnect_min_s,
                                          self.settings.reconnect_max_s, self._rng)
                        self._kick.wait(delay)
                        self._kick.clear()
                        if self._stop.is_set():
                            break
                    attempt += 1
                    self._connect()
                    continue
                if self._connected:
                    attempt = 0
                    if self._needs_subscribe:
                        self._needs_subscribe = False
                        for topic in self.settings.subscribe_topics:
                            self._client.subscribe(topic, qos=1)
                    self._drain_requests()
                elif self._connack_overdue():
                    self._drop_socket("no CONNACK within connect_timeout_s")
                    continue
                rc = self._loop_once(self.settings.loop_interval_s)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and self._socket_open:
                    self._drop_socket(f"connection lost ({mqtt.error_string(rc)})")
        finally:
            with contextlib.suppress(Exception):
                if self._connected:
                    self._client.disconnect()
                    self._client.loop(timeout=0.2)
            self._connected = False
            self._socket_open = False
            self.state = "stopped"
            with contextlib.suppress(Exception):
                self._client._sock_close()

    def _loop_once(self, timeout_s: float) -> MQTTErrorCode:
        """paho's `loop()`, with our wake-up socket in its select (paho's external-loop API)."""
        client = self._client
        sock = client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # TLS may hold decrypted bytes the kernel socket no longer shows as readable.
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        try:
            readable, writable, _ = select.select([sock, self._wake_r], [sock] if client.want_write() else [],
                                                  [], 0.0 if pending else timeout_s)
        except (OSError, ValueError, TypeError):  # the socket was closed under us
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
        if sock in readable or pending:
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc
        if sock in writable:
            rc = client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc
        return client.loop_misc()

    def _connect(self) -> None:
        s = self.settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        self.state = "connecting"
        self.attempts += 1
        try:
            if s.will_factory is not None:
                self._set_will(self._client)
            self._client.connect(s.host, s.port, keepalive=s.keepalive_s, clean_start=False,
                                 properties=props)
        except (OSError, ssl.SSLError, ValueError) as error:
            self.last_error = f"{type(error).__name__}: {error}"
            self.state = "disconnected"
            self.events.put(ConnectRefused(self.last_error))
            return
        self._socket_open = True
        self._awaiting_connack_since_ns = self.clock.monotonic_ns()
        self.connects += 1

    def _connack_overdue(self) -> bool:
        since = self._awaiting_connack_since_ns
        return since is not None and (
            self.clock.monotonic_ns() - since > self.settings.connect_timeout_s * 1e9)

    def _drop_socket(self, reason: str) -> None:
        was_connected = self._connected
        self._connected = False
        self._socket_open = False
        self._awaiting_connack_since_ns = None
        self.state = "disconnected"
        self.last_error = reason
        with contextlib.suppress(Exception):
            self._client._sock_close()
        if was_connected:
            self.events.put(Disconnected(reason))
        else:
            self.events.put(ConnectRefused(reason))

    def _drain_requests(self) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            token, topic, payload, qos = request
            info = self._client.publish(topic, payload, qos=qos)
            if qos == 0:
                continue
            self._mid_to_token[info.mid] = token
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self._mid_to_token.pop(info.mid, None)
                self.events.put(Published(token, False, mqtt.error_string(info.rc)))

    @property
    def state_name(self) -> str:
        return "connected" if self._connected else self.state
