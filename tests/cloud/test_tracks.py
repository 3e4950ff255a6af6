"""`cloud.store.tracks.track`: a device's fixes as numpy columns, exactly as stored."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cloud.ingest.validate import Accepted, Incoming
from cloud.ingest.writer import BatchWriter
from cloud.store.db import Conn
from cloud.store.errors import StoreError
from cloud.store.retention import RetentionPolicy
from cloud.store.tracks import track
from tests.cloud.conftest import register
from tests.cloud.helpers import BASE_NS, telemetry


def test_track_returns_one_devices_fixes_in_time_order(db: Conn) -> None:
    register(db, "gw-t")
    register(db, "gw-other")
    writer = BatchWriter(db, mode="plain", receiver_id="t", policy=RetentionPolicy())
    messages = [telemetry("gw-t", seq, samples=0, fixes=10) for seq in (3, 1, 2)]
    messages.append(telemetry("gw-other", 1, samples=0, fixes=10))
    outcomes = [Accepted(Incoming("t", b"", 1, 1, time.time_ns()), m, 10) for m in messages]
    writer.write(outcomes, datetime.now(UTC))  # type: ignore[arg-type]
    start = datetime.fromtimestamp(BASE_NS / 1e9, UTC)
    got = track(db, "gw-t", start, start + timedelta(hours=1))
    expected = sorted((t, lat, lon) for m in messages[:3]
                      for t, lat, lon in zip(m.fixes.time_ns, m.fixes.lat_deg, m.fixes.lon_deg, strict=True))
    assert len(got) == 30
    assert got.time_ns.tolist() == [t // 1000 * 1000 for t, _, _ in expected]
    assert np.allclose(got.lat_deg, [lat for _, lat, _ in expected], atol=1e-7)
    assert np.allclose(got.lon_deg, [lon for _, _, lon in expected], atol=1e-7)
    assert np.allclose(got.speed_kmh, 30.0)
    assert len(track(db, "gw-t", start - timedelta(days=2), start - timedelta(days=1))) == 0
    with pytest.raises(StoreError, match="timezone-aware"):
        track(db, "gw-t", datetime(2026, 1, 1), datetime(2026, 1, 2))
