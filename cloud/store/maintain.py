"""`lienwatch cloud maintain`: partitions ahead and retention, run as the tables' owner.

With deploy/postgres/roles.sql the receiver connects as lienwatch_ingest, which may create the
partitions its rows need but may not detach or drop any: a timer runs this command as
lienwatch_migrate instead (docs/security.md, deploy/postgres/README.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime

from cloud.config import MaintenanceConfig, load_config
from cloud.store.db import Conn, connect, describe
from cloud.store.errors import StoreError
from cloud.store.fleet import reconcile_open_events
from cloud.store.migrate import check_schema
from cloud.store.partitions import PartitionKeeper
from cloud.store.retention import RetentionPolicy, RetentionResult, apply_retention, owns_time_series
from lienwatch.clock import Clock, SystemClock


@dataclass(frozen=True)
class MaintenanceRun:
    created: int
    retention: RetentionResult
    reconciled: tuple[int, int] = (0, 0)  # device-list open events and event ranks removed


def maintain(conn: Conn, policy: RetentionPolicy, ahead_days: int, clock: Clock) -> MaintenanceRun:
    """Create partitions `ahead_days` ahead (plain storage), apply the retention policy, and drop the
    device list's open events whose lifecycle rows retention removed (migration 0014)."""
    mode = check_schema(conn)
    if not owns_time_series(conn):
        raise StoreError("this role does not own the lienwatch tables: run maintenance as the owner "
                         "(lienwatch_migrate, deploy/postgres/roles.sql)")
    now = datetime.fromtimestamp(clock.wall_ns() // 10**9, UTC)
    created = PartitionKeeper().ensure_ahead(conn, now.date(), ahead_days) if mode == "plain" else 0
    retention = apply_retention(conn, policy, now, mode)
    return MaintenanceRun(created=created, retention=retention, reconciled=reconcile_open_events(conn))


def run_maintain(args: argparse.Namespace) -> int:
    if args.config:
        config = load_config(args.config)
        policy, ahead = config.retention, config.maintenance.partitions_ahead_days
    else:
        policy, ahead = RetentionPolicy(), MaintenanceConfig().partitions_ahead_days
    with connect(args.dsn, application_name="lienwatch-maintain") as conn:
        where = describe(conn)
        run = maintain(conn, policy, ahead, SystemClock())
    removed = run.retention.removed
    print(f"{where}: created {run.created} partition(s) ahead ({ahead} days); "
          f"retention removed {len(removed)} "
          f"partition(s){': ' + ', '.join(removed) if removed else ''}, kept {run.retention.kept}"
          + (f"; jobs changed: {', '.join(run.retention.changed)}" if run.retention.changed else "")
          + f"; device list: {run.reconciled[0]} closed open event(s), {run.reconciled[1]} rank(s) removed")
    return 0
