"""Daily summaries over a range and the 30-day vehicle report, JSON and CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest

from cloud.analytics.errors import AnalyticsError
from cloud.analytics.reports import daily_summaries, report_csv, vehicle_report
from cloud.store import summaries
from cloud.store.db import Conn
from cloud.store.devices import Device, add_device
from cloud.store.partitions import PartitionKeeper
from tests.cloud.seed import T0, Scenario, write

DAY = T0.date()  # 2026-03-02; the car lives in UTC+1 (Europe/Berlin, winter)


def seed(db: Conn) -> None:
    add_device(db, Device("gw-rep", time_zone="Europe/Berlin"))
    # 08:00 local: 20 min at 36 km/h (12 km), then parked 3 h.
    s = Scenario(T0 + timedelta(hours=7), 48.1, 11.5).park(600).drive_north(1200, 36).park(3 * 3600)
    write(db, "gw-rep", s)
    keeper = PartitionKeeper()
    for table in ("daily_summaries", "track_days", "device_status", "events", "event_lifecycle"):
        keeper.ensure(db, table, DAY - timedelta(days=40), DAY + timedelta(days=2))
    db.execute("INSERT INTO summary_dirty (device_id, day) VALUES ('gw-rep', %s)", (DAY,))
    summaries.refresh_dirty(db, oldest_day=DAY - timedelta(days=400))
    for back in range(5):  # the 12 V supply's daily low falls 0.1 V a day
        db.execute("INSERT INTO device_status (device_id, time, boot_id, seq, supply_v, backup_v, "
                   "clock_quality) VALUES ('gw-rep', %s, 1, %s, %s, 4.1, 3)",
                   (T0 - timedelta(days=back) + timedelta(hours=12), 100 + back, 12.6 - 0.1 * (4 - back)))
    db.execute("INSERT INTO events (device_id, time, boot_id, seq, event_id, detector, severity, condition, "
               "clock_quality, received_at) VALUES ('gw-rep', %s, 1, 500, 77, 'odometer', 'ALERT', "
               "'dtc_clear_reset', 3, now())", (T0 + timedelta(hours=9),))
    db.execute("INSERT INTO event_lifecycle (device_id, event_time, boot_id, seq, event_id, state) "
               "VALUES ('gw-rep', %s, 1, 500, 77, 'acknowledged')", (T0 + timedelta(hours=9),))
    keeper.ensure(db, "signal_samples", DAY, DAY)
    with db.cursor().copy("COPY signal_samples (device_id, time, boot_id, seq, row_idx, signal_id, value) "
                          "FROM STDIN") as copy:
        copy.write_row(("gw-rep", T0 + timedelta(hours=8), 1, 900, 0, 15, 2.0))


def test_daily_summaries_over_a_range(db: Conn) -> None:
    seed(db)
    rows = daily_summaries(db, "gw-rep", DAY - timedelta(days=3), DAY + timedelta(days=1))
    assert [r["day"] for r in rows] == [DAY.isoformat()]  # days without data have no row
    day = rows[0]
    assert day["distance_km"] == pytest.approx(12.0, rel=0.01)
    assert day["driving_minutes"] == pytest.approx(20.0, abs=0.5)
    assert day["night_driving_minutes"] == 0
    with pytest.raises(AnalyticsError, match="before"):
        daily_summaries(db, "gw-rep", DAY, DAY - timedelta(days=1))
    with pytest.raises(AnalyticsError, match="at most"):
        daily_summaries(db, "gw-rep", DAY - timedelta(days=400), DAY)


def test_thirty_day_report_json_and_csv(db: Conn) -> None:
    seed(db)
    report = vehicle_report(db, "gw-rep", DAY)
    assert report["time_zone"] == "Europe/Berlin" and len(report["days"]) == 30
    assert report["first_day"] == (DAY - timedelta(days=29)).isoformat()
    assert report["last_day"] == DAY.isoformat()
    today = report["days"][-1]
    assert today["distance_km"] == pytest.approx(12.0, rel=0.01)
    assert today["dtc_count"] == 2.0 and today["events"] == 1
    assert today["supply_v_min"] == pytest.approx(12.2) and today["backup_v_min"] == pytest.approx(4.1)
    assert report["days"][0]["distance_km"] == 0 and report["days"][0]["supply_v_min"] is None
    assert report["totals"]["trips"] == 1
    assert report["totals"]["events_by_severity"] == {"WARNING": 0, "ALERT": 1, "EMERGENCY": 0}
    # The daily low fell 0.1 V a day towards today (status rows of the last five days).
    assert report["battery"]["supply_v_min_slope_per_day"] == pytest.approx(-0.1, abs=1e-3)
    assert report["battery"]["supply_v_min"] == pytest.approx(12.2)
    assert report["dtcs"]["max_count"] == 2.0 and report["dtcs"]["days_with_codes"] == 1
    assert [e["condition"] for e in report["dtcs"]["events"]] == ["dtc_clear_reset"]
    assert report["events"][0]["state"] == "acknowledged"
    (parked,) = report["stationary"]  # the 3 h after the drive (the 10 min before is < 1 h)
    assert parked["duration_h"] == pytest.approx(3.0, abs=0.01)
    assert parked["lat_deg"] == pytest.approx(48.1 + 12_000 / 111_195, abs=2e-4)
    table = list(csv.DictReader(io.StringIO(report_csv(report, "days"))))
    assert len(table) == 30 and table[-1]["day"] == DAY.isoformat()
    assert float(table[-1]["distance_km"]) == pytest.approx(today["distance_km"])
    assert table[0]["supply_v_min"] == ""
    events = list(csv.DictReader(io.StringIO(report_csv(report, "events"))))
    assert events[0]["detector"] == "odometer"
    assert report_csv({"stationary": []}, "stationary") == "start\n"
    with pytest.raises(AnalyticsError, match="part"):
        report_csv(report, "everything")
    with pytest.raises(AnalyticsError, match="days"):
        vehicle_report(db, "gw-rep", DAY, days=0)


def test_report_of_an_unknown_day_range_is_empty_not_an_error(db: Conn) -> None:
    seed(db)
    report = vehicle_report(db, "gw-rep", date(2025, 1, 31), days=7)
    assert len(report["days"]) == 7 and report["totals"]["distance_km"] == 0
    assert report["stationary"] == [] and report["events"] == []
