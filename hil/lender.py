"""What the lender sees of a device: its events (and, for the bench's accounting, stored row counts).

The scenario runner checks expectations through `LenderView`. `ApiView` asks the cloud HTTP API
(`cloud/api`, the way the console and the lender's systems do): that is what `lienwatch hil run`
uses. `StoreView` reads the same transitions straight from the `events` table (a bench without
the API, and the runner's own cross-check). Row counts per uplink record (boot, seq) are the
bench's accounting of exactly-once delivery and are read from the store: the API serves no
per-record counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

SEVERITY_RANK = {"WARNING": 1, "ALERT": 2, "EMERGENCY": 3}


@dataclass(frozen=True)
class SeenEvent:
    """One event id as the lender sees it: highest severity, when each severity was first reached."""

    event_id: int
    detector: str
    condition: str
    severity: str
    raised_ns: int
    first_at_ns: dict[str, int]  # severity -> first transition time with at least that severity
    cleared: bool
    lat: float | None = None
    lon: float | None = None

    def reached_ns(self, severity: str) -> int | None:
        """When this event first stood at `severity` or higher."""
        times = [t for s, t in self.first_at_ns.items() if SEVERITY_RANK[s] >= SEVERITY_RANK[severity]]
        return min(times) if times else None


class LenderView(Protocol):
    name: str

    def events(self, device_id: str) -> list[SeenEvent]: ...


def to_ns(value: Any) -> int:
    """A datetime or an ISO 8601 text (the API's) as ns since the epoch."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp()) * 10**9 + value.microsecond * 1000
    return int(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1e9)


def fold(rows: list[dict[str, Any]]) -> list[SeenEvent]:
    """Event transitions (event_id, detector, condition, severity, transition, time, lat, lon) → events."""
    by_id: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(int(row["event_id"]), []).append(row)
    out = []
    for event_id, items in by_id.items():
        items.sort(key=lambda r: to_ns(r["time"]))
        first: dict[str, int] = {}
        for row in items:
            if row["transition"] != "cleared":
                first.setdefault(str(row["severity"]), to_ns(row["time"]))
        raised = [r for r in items if r["transition"] == "raised"] or items
        top = max((r for r in items if r["transition"] != "cleared"), default=items[0],
                  key=lambda r: SEVERITY_RANK[str(r["severity"])])
        out.append(SeenEvent(event_id, str(items[0]["detector"]), str(items[0].get("condition") or ""),
                             str(top["severity"]), to_ns(raised[0]["time"]), first,
                             any(r["transition"] == "cleared" for r in items),
                             raised[0].get("lat"), raised[0].get("lon")))
    return sorted(out, key=lambda e: e.raised_ns)


class StoreView:
    """Events straight from the store (`events` rows, one per transition)."""

    name = "store"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def events(self, device_id: str) -> list[SeenEvent]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.dsn, row_factory=dict_row) as conn:
            rows = conn.execute(
                "SELECT event_id, detector, condition, severity, transition, time, lat_deg AS lat, "
                "lon_deg AS lon FROM events WHERE device_id = %s ORDER BY time", (device_id,)).fetchall()
        return fold(list(rows))


class ApiView:
    """Events from the cloud API (`GET /events?device_id=`, then each event's history), as a
    risk officer's bearer key sees them."""

    name = "API"

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url, self.api_key = base_url.rstrip("/"), api_key

    def events(self, device_id: str) -> list[SeenEvent]:
        import httpx

        rows: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"},
                          timeout=30.0) as client:
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"device_id": device_id, "limit": 500}
                if cursor:
                    params["cursor"] = cursor
                page = client.get("/events", params=params)
                page.raise_for_status()
                body = page.json()
                for item in body["items"]:
                    detail = client.get(f"/devices/{device_id}/events/{item['event_id']}")
                    detail.raise_for_status()
                    event = detail.json()
                    rows.extend({"event_id": event["event_id"], "detector": event["detector"],
                                 "condition": event.get("condition", ""), "severity": h["severity"],
                                 "transition": h["transition"], "time": h["time"],
                                 "lat": event.get("lat_deg"), "lon": event.get("lon_deg")}
                                for h in event["history"])
                cursor = body.get("next_cursor")
                if not cursor:
                    break
        return fold(rows)


def stored_rows(dsn: str, device_id: str) -> dict[tuple[int, int], tuple[int, int]]:
    """(boot, seq) -> (positions, signal samples) stored for `device_id`."""
    import psycopg

    out: dict[tuple[int, int], list[int]] = {}
    with psycopg.connect(dsn) as conn:
        for column, table in ((0, "positions"), (1, "signal_samples")):
            for boot, seq, count in conn.execute(
                    f"SELECT boot_id, seq, count(*) FROM {table} WHERE device_id = %s GROUP BY 1, 2",
                    (device_id,)):
                out.setdefault((int(boot), int(seq)), [0, 0])[column] = int(count)
    return {k: (v[0], v[1]) for k, v in out.items()}
