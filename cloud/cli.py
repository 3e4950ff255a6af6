"""Commands for cloud operators: schema, device registry, receiver and API."""

from __future__ import annotations

import argparse

from lienwatch.cli import add_group, not_yet

_INGEST = "issue: cloud storage and ingest"
_API = "issue: cloud query API"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cloud = add_group(commands, "cloud", "Run the cloud receiver and API.")

    migrate = cloud.add_parser("migrate", help="Apply the database schema migrations.")
    migrate.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    migrate.set_defaults(handler=not_yet(_INGEST))

    ingest = cloud.add_parser("ingest", help="Receive device messages from MQTT into the store.")
    ingest.add_argument("--config", required=True, help="receiver TOML config")
    ingest.set_defaults(handler=not_yet(_INGEST))

    api = cloud.add_parser("api", help="Serve the HTTP API (tracks, alerts, summaries, commands).")
    api.add_argument("--config", required=True, help="API TOML config")
    api.set_defaults(handler=not_yet(_API))

    devices = cloud.add_parser("devices", help="Register, list and remove devices.")
    devices.add_argument("action", choices=["add", "list", "remove"])
    devices.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    devices.set_defaults(handler=not_yet(_INGEST))
