"""Prometheus metrics of one receiver, served on a loopback HTTP port.

Rates (messages/s, rows/s) are `rate()` of the counters; consumer lag is both the backlog
(received, not yet committed) and the age of messages at commit (device send time to commit).
Each receiver has its own registry, so several can run in one process (tests, the benchmark).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from cloud.ingest.validate import Accepted, Outcome
from cloud.ingest.writer import WriteResult

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0)


class IngestMetrics:
    """The receiver's counters, gauges and histograms (names start with `lienwatch_ingest_`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("lienwatch_ingest_received_messages", "Messages received from the broker",
                                registry=r)
        self.dropped_qos0 = Counter("lienwatch_ingest_dropped_qos0_messages",
                                    "QoS 0 messages (statuses) not queued: the receiver was overloaded",
                                    registry=r)
        self.messages = Counter("lienwatch_ingest_messages", "Messages committed, by kind and outcome",
                                ["kind", "outcome"], registry=r)
        self.rows = Counter("lienwatch_ingest_rows", "Rows newly stored, by table", ["table"], registry=r)
        self.duplicates = Counter("lienwatch_ingest_duplicate_rows",
                                  "Rows not stored because they were already stored (redelivery)",
                                  ["table"], registry=r)
        self.rejects = Counter("lienwatch_ingest_rejected_messages", "Messages kept aside, by reason",
                               ["reason"], registry=r)
        self.batch_seconds = Histogram("lienwatch_ingest_batch_seconds",
                                       "Time to write and commit one batch, by lane", ["lane"], registry=r,
                                       buckets=_LATENCY_BUCKETS)
        self.batch_messages = Histogram("lienwatch_ingest_batch_messages", "Messages per batch, by lane",
                                        ["lane"], registry=r,
                                        buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
        self.backlog = Gauge("lienwatch_ingest_backlog_messages",
                             "Messages received and not yet committed (consumer lag), by lane", ["lane"],
                             registry=r)
        self.message_age = Histogram("lienwatch_ingest_message_age_seconds",
                                     "From the device's send time to commit (consumer lag per message)",
                                     registry=r, buckets=_LATENCY_BUCKETS)
        self.commit_delay = Histogram("lienwatch_ingest_receive_to_commit_seconds",
                                      "From receipt by this receiver to commit", registry=r,
                                      buckets=_LATENCY_BUCKETS)
        self.queue_depth = Gauge("lienwatch_ingest_queue_depth_messages",
                                 "Messages received and waiting for the decoder, by lane (refreshed "
                                 "between batches; near receive_maximum = the receiver is behind)",
                                 ["lane"], registry=r)
        self.lag = Gauge("lienwatch_ingest_lag_seconds",
                         "Age at commit of the oldest message of the last batch (broker receipt to "
                         "commit), by lane", ["lane"], registry=r)
        self.receipts = Counter("lienwatch_ingest_receipts_sent",
                                "Stored receipts published to devices", registry=r)
        self.receipt_bytes = Counter("lienwatch_ingest_receipt_bytes",
                                     "Payload bytes of stored receipts published", registry=r)
        self._server: Any = None
        self.port: int | None = None

    def record(self, lane: str, result: WriteResult, batch_s: float, batch: Sequence[Outcome], now_ns: int,
               backlog: int) -> None:
        self.batch_seconds.labels(lane).observe(batch_s)
        self.batch_messages.labels(lane).observe(len(batch))
        for kind, count in result.kinds.items():
            self.messages.labels(kind, "stored").inc(count)
        for reason, count in result.rejected.items():
            self.rejects.labels(reason).inc(count)
            self.messages.labels("unknown", "rejected").inc(count)
        for table, count in result.inserted.items():
            self.rows.labels(table).inc(count)
        for table, count in result.duplicates.items():
            self.duplicates.labels(table).inc(count)
        if batch:
            oldest = min(outcome.incoming.received_ns for outcome in batch)
            self.lag.labels(lane).set(max(now_ns - oldest, 0) / 1e9)
        for outcome in batch:
            self.commit_delay.observe(max(now_ns - outcome.incoming.received_ns, 0) / 1e9)
            if isinstance(outcome, Accepted):
                self.message_age.observe(max(now_ns - outcome.message.header.sent_ns, 0) / 1e9)
        self.backlog.labels(lane).set(backlog)

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics on host:port (port 0 = do not serve)."""
        if port == 0 or self._server is not None:
            return
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
            self._server = None
