"""The uplink pump: empties the flash queue over the MQTT link, within a daily data budget.

`Uplink.pump()` runs on the agent's thread. It reads the link's events (PUBACKs, connection
changes, downlink messages), commits acknowledged records, and tops the in-flight window up with
the highest-priority records. A record leaves the queue only after its PUBACK (or, counted and
logged, when the broker answers with a failure reason code).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.uplink.mqtt import (
    Connected,
    ConnectRefused,
    Disconnected,
    MessageReceived,
    MqttLink,
    Published,
)
from edge.uplink.queue import Channel, FlashQueue
from lienwatch.clock import Clock, SystemClock

log = logging.getLogger("lienwatch.uplink")

_NS_PER_DAY = 86_400 * 10**9
# What one QoS 1 publish costs beyond payload and topic: MQTT fixed + variable header, packet id,
# properties length, the PUBACK, and TLS record framing (AEAD tag + header). An estimate, on the
# high side, so the daily cap is not overrun.
PUBLISH_OVERHEAD_BYTES = 48


@dataclass
class DataBudget:
    """A daily data-volume cap (UTC days). Telemetry stops first; events always go.

    Telemetry may use `daily_cap_bytes × (1 − event_reserve_fraction)`; the rest is kept for
    events, status and command acks. ALERT/EMERGENCY events are sent even beyond the cap (counted
    in `over_cap_bytes`): a towed car matters more than a data bill. Telemetry that does not fit
    stays queued (deferred, not dropped) until the next day or until the queue's size bound
    evicts it, which is counted there.
    """

    daily_cap_bytes: int
    event_reserve_fraction: float = 0.2
    clock: Clock = field(default_factory=SystemClock)
    spent_today: int = 0
    over_cap_bytes: int = 0
    deferred_rounds: int = 0
    day_index: int = -1

    def _roll(self) -> None:
        day = self.clock.wall_ns() // _NS_PER_DAY
        if day != self.day_index:
            self.day_index = day
            self.spent_today = 0

    @property
    def telemetry_cap_bytes(self) -> int:
        return int(self.daily_cap_bytes * (1 - self.event_reserve_fraction))

    def telemetry_open(self) -> bool:
        self._roll()
        return self.spent_today < self.telemetry_cap_bytes

    def spend(self, size: int) -> None:
        self._roll()
        self.spent_today += size
        if self.spent_today > self.daily_cap_bytes:
            self.over_cap_bytes += min(size, self.spent_today - self.daily_cap_bytes)

    def forecast_today_bytes(self) -> int:
        """Linear forecast of today's total at the current rate (a seam for edge/power)."""
        self._roll()
        elapsed = (self.clock.wall_ns() % _NS_PER_DAY) / _NS_PER_DAY
        return int(self.spent_today / max(elapsed, 1 / 1440))

    def snapshot(self) -> dict[str, object]:
        return {
            "daily_cap_bytes": self.daily_cap_bytes,
            "telemetry_cap_bytes": self.telemetry_cap_bytes,
            "spent_today_bytes": self.spent_today,
            "forecast_today_bytes": self.forecast_today_bytes(),
            "telemetry_open": self.telemetry_open(),
            "over_cap_bytes": self.over_cap_bytes,
            "deferred_rounds": self.deferred_rounds,
        }


class Uplink:
    """Moves records from the flash queue to the broker; commit on PUBACK only."""

    def __init__(self, outbox: FlashQueue, link: MqttLink, topics: Mapping[Channel, str],
                 budget: DataBudget, *, window: int | None = None, clock: Clock | None = None) -> None:
        missing = [c.name for c in Channel if c not in topics]
        if missing:
            raise ValueError(f"no topic for channel(s) {missing}")
        self.outbox = outbox
        self.link = link
        self.topics = dict(topics)
        self.budget = budget
        self.window = window or link.settings.inflight_window
        self.clock = clock or SystemClock()
        self._in_flight: set[int] = set()
        self.published = 0
        self.acknowledged = 0
        self.rejected = 0
        self.connected_since_ns: int | None = None
        self.last_refusal = ""
        self.refusals = 0

    def pump(self) -> list[MessageReceived]:
        """Handle everything the link reported, then fill the in-flight window. Never blocks."""
        downlink: list[MessageReceived] = []
        accepted: list[int] = []
        rejected: list[int] = []
        while True:
            try:
                event = self.link.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, Published):
                self._in_flight.discard(event.token)
                if event.ok:
                    accepted.append(event.token)
                else:
                    rejected.append(event.token)
                    log.error("broker refused a publish", extra={"record_id": event.token,
                                                                  "reason": event.reason})
            elif isinstance(event, MessageReceived):
                downlink.append(event)
            elif isinstance(event, Connected):
                self.connected_since_ns = self.clock.wall_ns()
                log.info("connected", extra={"session_present": event.session_present})
            elif isinstance(event, Disconnected):
                self.connected_since_ns = None
                log.warning("disconnected", extra={"reason": event.reason})
            elif isinstance(event, ConnectRefused):
                self.refusals += 1
                self.last_refusal = event.reason
                log.warning("connection refused", extra={"reason": event.reason})
        if accepted or rejected:
            self.outbox.end(accepted=accepted, rejected=rejected)
            self.acknowledged += len(accepted)
            self.rejected += len(rejected)
        self._top_up()
        return downlink

    def _top_up(self) -> None:
        if not self.link.connected:
            return
        room = self.window - len(self._in_flight)
        if room <= 0:
            return
        channels = None
        if not self.budget.telemetry_open():
            channels = [c for c in Channel if c != Channel.TELEMETRY]
            self.budget.deferred_rounds += 1
        for record in self.outbox.begin(room, channels=channels):
            topic = self.topics[record.channel]
            self.budget.spend(len(record.payload) + len(topic) + PUBLISH_OVERHEAD_BYTES)
            self._in_flight.add(record.record_id)
            self.link.publish(record.record_id, topic, record.payload)
            self.published += 1

    def send_now(self, channel: Channel, payload: bytes) -> bool:
        """Publish at QoS 0 without queueing (a heartbeat superseded by the next); False if offline."""
        if not self.link.connected:
            return False
        topic = self.topics[channel]
        self.budget.spend(len(payload) + len(topic) + PUBLISH_OVERHEAD_BYTES)
        self.link.publish(-1, topic, payload, qos=0)
        return True

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self.link.state_name,
            "connected_since_ns": self.connected_since_ns,
            "last_error": self.link.last_error,
            "connect_attempts": self.link.attempts,
            "refusals": self.refusals,
            "in_flight": len(self._in_flight),
            "published": self.published,
            "acknowledged": self.acknowledged,
            "rejected_by_broker": self.rejected,
            "budget": self.budget.snapshot(),
        }
