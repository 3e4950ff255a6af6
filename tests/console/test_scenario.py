"""The seeded night tow is what the browser tests rely on: checked in the database itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.store.db import Conn
from tests.console.scenario import NO_FIX_MINUTES, TOW_DEVICE, YARD, seed_night_tow

pytestmark = pytest.mark.services


def test_night_tow_is_stored_with_an_emergency_and_a_no_fix_stretch(db: Conn) -> None:
    night = seed_night_tow(db, datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    assert night.tow_start == datetime(2026, 12, 2, 2, 10, tzinfo=UTC)
    current = db.execute("SELECT severity, state FROM event_current WHERE device_id = %s AND event_id = %s",
                         (TOW_DEVICE, night.tow_event_id)).fetchone()
    assert current == ("EMERGENCY", "open")
    last = db.execute("SELECT lat_deg, lon_deg FROM positions WHERE device_id = %s "
                      "ORDER BY time DESC LIMIT 1",
                      (TOW_DEVICE,)).fetchone()
    assert last is not None and (round(last[0], 5), round(last[1], 5)) == YARD
    no_fix = db.execute("SELECT min(time), max(time), count(*) FROM positions WHERE device_id = %s "
                        "AND fix_type = 0", (TOW_DEVICE,)).fetchone()
    assert no_fix is not None and no_fix[2] == (NO_FIX_MINUTES[1] - NO_FIX_MINUTES[0]) * 6
    assert no_fix[0] == night.tow_start + timedelta(minutes=NO_FIX_MINUTES[0])
