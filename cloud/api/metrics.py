"""Prometheus metrics of one API instance (its own registry, served at /metrics).

With several worker processes (`[api] workers`, cloud/api/workers.py) prometheus_client's
multiprocess mode keeps each process's values in files under `PROMETHEUS_MULTIPROC_DIR` (set
before the workers start) and /metrics sums them, whichever process answers.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess


class ApiMetrics:
    """Requests by route and status, their latency, audit records, refusals and commands."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lienwatch_api_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lienwatch_api_request_seconds",
            "Time to answer a request",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
        )
        self.audit_records = Counter(
            "lienwatch_api_audit_records_total", "Audit records written", ["allowed"], registry=self.registry
        )
        self.rate_limited = Counter(
            "lienwatch_api_rate_limited_total", "Requests refused with 429", registry=self.registry
        )
        self.commands = Counter(
            "lienwatch_api_commands_total",
            "Commands created, by outcome of publishing",
            ["outcome"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format: this process's, or every worker's summed."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
