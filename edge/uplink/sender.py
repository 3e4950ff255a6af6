"""The uplink pump: empties the flash queue over the MQTT link, within a daily data budget.

`Uplink.pump()` runs on the agent's thread. It reads the link's events (PUBACKs, connection
changes, downlink messages), finishes acknowledged records, and tops the in-flight window up with
the highest-priority records.

When is a record done? With stored receipts (docs/agent.md, "Delivery guarantee"): when the
receiver's stored receipt names its (boot, seq) — after the database committed it. A PUBACK only
moves it to "delivered"; a delivered record without a receipt after `ReceiptSettings.timeout_s`
is sent again (the unique key makes that safe) — at once if a later record of its channel was
confirmed (it was skipped: lost), else once overdue, waiting twice as long each round. With
`mode = "off"` the PUBACK is the end; with `"auto"` while this device has never seen a receipt
(an old receiver?) the PUBACK is the end `timeout_s` later. A broker's failure reason code drops
the record, counted and logged.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge.uplink.mqtt import (
    Connected,
    ConnectRefused,
    Disconnected,
    MessageReceived,
    MqttLink,
    Published,
)
from edge.uplink.queue import Channel, FlashQueue, Priority
from lienwatch.clock import Clock, SystemClock
from protocol.codec import decode
from protocol.errors import ProtocolError
from protocol.messages import StoredReceipt

log = logging.getLogger("lienwatch.uplink")

_NS_PER_DAY = 86_400 * 10**9
# What one QoS 1 publish costs beyond payload and topic: MQTT fixed + variable header, packet id,
# properties length, the PUBACK, and TLS record framing (AEAD tag + header). An estimate, on the
# high side, so the daily cap is not overrun.
PUBLISH_OVERHEAD_BYTES = 48
_SKIP_GRACE_NS = 2_000_000_000  # receipts of one lane come in order; 2 s covers one receipt interval


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


@dataclass(frozen=True, slots=True)
class ReceiptSettings:
    """End-to-end confirmation (see deploy/agent.example.toml, [uplink.receipts]).

    mode: "auto" asks for receipts and, once this device has seen one (remembered in
    `seen_file`), keeps records until they come; before that a record is done `timeout_s` after
    its PUBACK (an old receiver never confirms: PUBACK semantics, a little later). "required"
    always waits for receipts, "off" neither asks nor waits (PUBACK semantics, as before
    receipts existed).
    """

    mode: str = "auto"
    timeout_s: float = 120.0  # a delivered record without receipt after this is re-sent
    max_timeout_s: float = 960.0  # re-send rounds without any receipt double the timeout up to this
    max_unconfirmed: int = 64  # back-pressure: no new publishes while this many wait for receipts
    receipt_topic: str | None = None
    seen_file: Path | None = None

    @property
    def asks(self) -> bool:
        return self.mode != "off" and self.receipt_topic is not None


class Uplink:
    """Moves records from the flash queue to the broker; a record is done on its stored receipt
    (or its PUBACK, without receipts)."""

    def __init__(self, outbox: FlashQueue, link: MqttLink, topics: Mapping[Channel, str],
                 budget: DataBudget, *, window: int | None = None, clock: Clock | None = None,
                 receipts: ReceiptSettings | None = None, device_id: str = "") -> None:
        missing = [c.name for c in Channel if c not in topics]
        if missing:
            raise ValueError(f"no topic for channel(s) {missing}")
        self.outbox = outbox
        self.link = link
        self.topics = dict(topics)
        self.budget = budget
        self.window = window or link.settings.inflight_window
        self.clock = clock or SystemClock()
        self.receipts = receipts or ReceiptSettings(mode="off")
        self.device_id = device_id
        self._in_flight: dict[int, bool] = {}  # record id -> keyed (waits for a receipt)
        self.published = 0
        self.acknowledged = 0
        self.rejected = 0
        self.receipts_received = 0
        self.receipts_refused = 0
        self.confirmed = 0
        self.connected_since_ns: int | None = None
        self.last_refusal = ""
        self.refusals = 0
        seen = self.receipts.seen_file
        self.receipts_seen = self.receipts.mode == "required" or (seen is not None and seen.exists())
        self._timeout_factor = 1
        self._next_sweep_ns = 0
        self._urgent_seen = 0

    def pump(self) -> list[MessageReceived]:
        """Handle everything the link reported, then fill the in-flight window. Never blocks."""
        downlink: list[MessageReceived] = []
        accepted: list[int] = []
        delivered: list[int] = []
        rejected: list[int] = []
        while True:
            try:
                event = self.link.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, Published):
                keyed = self._in_flight.pop(event.token, False)
                if event.ok:
                    (delivered if keyed else accepted).append(event.token)
                else:
                    rejected.append(event.token)
                    log.error("broker refused a publish", extra={"record_id": event.token,
                                                                  "reason": event.reason})
            elif isinstance(event, MessageReceived):
                if event.topic == self.receipts.receipt_topic:
                    self._take_receipt(event.payload)
                else:
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
        if accepted or rejected or delivered:
            self.outbox.end(accepted=accepted, rejected=rejected, delivered=delivered)
            self.acknowledged += len(accepted) + len(delivered)
            self.rejected += len(rejected)
        self._sweep()
        self._kick_if_urgent()
        self._top_up()
        return downlink

    def _take_receipt(self, payload: bytes) -> None:
        """A stored receipt: forget the records it names (only our own, only ones we hold)."""
        try:
            receipt = decode(payload)
            if not isinstance(receipt, StoredReceipt):
                raise ProtocolError(f"a {type(receipt).__name__} arrived on the receipt topic")
            if receipt.target_device_id != self.device_id:
                raise ProtocolError(f"a receipt for {receipt.target_device_id!r}, not for us")
        except ProtocolError as error:
            self.receipts_refused += 1
            log.warning("stored receipt refused", extra={"detail": str(error)[:200]})
            return
        self.receipts_received += 1
        self.confirmed += self.outbox.confirm(receipt.stored_keys())
        if not self.outbox.delivered:
            self._timeout_factor = 1  # caught up: the next overdue round waits timeout_s again
        if not self.receipts_seen:
            self.receipts_seen = True
            self._remember_seen()
            log.info("the cloud confirms what it stores: records now wait for stored receipts")

    def _remember_seen(self) -> None:
        path = self.receipts.seen_file
        if path is None:
            return
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("stored receipts seen\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:  # the next boot learns it again from the next receipt
            log.warning("cannot remember that receipts were seen", extra={"detail": str(error)})

    def _sweep(self) -> None:
        """Once a second: re-send delivered records whose receipt is overdue (finish them if no
        receipt was ever seen)."""
        now = self.clock.monotonic_ns()
        if now < self._next_sweep_ns or not self.outbox.delivered:
            return
        self._next_sweep_ns = now + 1_000_000_000
        timeout_ns = int(self.receipts.timeout_s * 1e9)
        if not self.receipts_seen:
            self.outbox.commit_delivered(now - timeout_ns)  # nothing ever confirmed: PUBACK semantics
            return
        if not self.link.connected:
            return  # re-sending needs a link; overdue records wait
        # Skipped: a later record of the same channel was confirmed, so these were lost on the way.
        skipped = self.outbox.redeliver(now - timeout_ns, skipped_grace_ns=_SKIP_GRACE_NS)
        # Overdue: nothing newer confirmed either (receipts lost, or a receiver far behind): once
        # after the timeout, then after twice as long each round, up to max_timeout_s.
        overdue = self.outbox.redeliver(now - timeout_ns * self._timeout_factor)
        if skipped or overdue:
            log.warning("no stored receipt in time: sending again",
                        extra={"skipped": skipped, "overdue": overdue,
                               "timeout_s": self.receipts.timeout_s * self._timeout_factor})
        if overdue:
            limit = max(int(self.receipts.max_timeout_s / max(self.receipts.timeout_s, 1e-3)), 1)
            self._timeout_factor = min(self._timeout_factor * 2, limit)

    def _kick_if_urgent(self) -> None:
        """An ALERT or EMERGENCY queued while offline: reconnect now instead of after the backoff."""
        if self.link.connected:
            self._urgent_seen = 0
            return
        depth = self.outbox.depth_by_priority()
        urgent = depth[Priority.ALERT.name] + depth[Priority.EMERGENCY.name]
        if urgent > self._urgent_seen:
            self.link.kick()
        self._urgent_seen = urgent

    def _top_up(self) -> None:
        if not self.link.connected:
            return
        room = self.window - len(self._in_flight)
        if self.waits_for_receipts:
            # Back-pressure: what the cloud has not confirmed stays on flash, and no more is sent
            # while too much is unconfirmed (an overloaded receiver slows the fleet down).
            room = min(room, self.receipts.max_unconfirmed - self.outbox.delivered)
        if room <= 0:
            return
        channels = None
        if not self.budget.telemetry_open():
            channels = [c for c in Channel if c != Channel.TELEMETRY]
            self.budget.deferred_rounds += 1
        for record in self.outbox.begin(room, channels=channels):
            topic = self.topics[record.channel]
            self.budget.spend(len(record.payload) + len(topic) + PUBLISH_OVERHEAD_BYTES)
            self._in_flight[record.record_id] = self.receipts.asks and record.key is not None
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
    def waits_for_receipts(self) -> bool:
        """Keyed records are done on their stored receipt (else on their PUBACK)."""
        return self.receipts.asks and self.receipts_seen

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
            "receipts": {"mode": self.receipts.mode, "seen": self.receipts_seen,
                         "received": self.receipts_received, "refused": self.receipts_refused,
                         "confirmed": self.confirmed, "unconfirmed": self.outbox.delivered,
                         "timeout_s": self.receipts.timeout_s * self._timeout_factor},
            "budget": self.budget.snapshot(),
        }
