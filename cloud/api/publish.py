"""Publishing signed commands to the broker (QoS 1, the device's command topic).

One paho client per API process, connected in the background (`start`) with the same settings
as the receiver's (`[mqtt]`, cloud/config.py MqttConfig; the broker's ACL gives the identity
`lienwatch-api` write access to `lienwatch/v1/+/down/command` only). `publish` waits for the
broker's PUBACK up to a timeout and says whether it came: a command that could not be handed to
the broker stays `pending` and is published again by `CommandSweeper` (cloud/api/commands.py).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud.config import MqttConfig
from protocol.messages import MessageKind
from protocol.topics import command_topic, qos_for

log = logging.getLogger(__name__)


class CommandPublisher:
    """A connected-in-the-background MQTT client that publishes command payloads."""

    def __init__(self, config: MqttConfig, timeout_s: float, *, client_id_suffix: str = "") -> None:
        """`client_id_suffix` tells apart the clients of several API processes (a broker drops
        the older of two connections with one client id)."""
        self.config = config
        self.timeout_s = timeout_s
        self.connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id + client_id_suffix,
                             protocol=mqtt.MQTTv5)
        if config.username:
            client.username_pw_set(config.username, config.password or None)
        if config.tls is not None:
            client.tls_set(
                ca_certs=config.tls.ca_file or None,
                certfile=config.tls.cert_file or None,
                keyfile=config.tls.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.reconnect_delay_set(1, max(1, int(config.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("API command publisher: the broker refused the connection: %s", reason)
            return
        log.info("API command publisher connected to %s:%d", self.config.host, self.config.port)
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()

    def start(self) -> None:
        """Connect in the background; publishing waits for the connection up to the timeout."""
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def publish(self, device_id: str, payload: bytes) -> bool:
        """Publish one command payload; True once the broker acknowledged it (PUBACK)."""
        if not self.connected.wait(self.timeout_s):
            return False
        info = self.client.publish(command_topic(device_id), payload, qos=qos_for(MessageKind.COMMAND))
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()
