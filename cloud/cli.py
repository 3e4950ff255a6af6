"""Commands for cloud operators: schema, device registry, receiver and API."""

from __future__ import annotations

import argparse

from cloud import pki
from lienwatch.cli import add_group, lazy


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cloud = add_group(commands, "cloud", "Run the cloud receiver and API.")

    migrate = cloud.add_parser("migrate", help="Apply the database schema migrations.")
    migrate.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    migrate.add_argument("--storage", choices=["auto", "plain", "timescaledb"], default="auto",
                         help="storage mode for a new database (default: timescaledb when available)")
    migrate.set_defaults(handler=lazy("cloud.store.commands:run_migrate"))

    maintain = cloud.add_parser("maintain", help="Create partitions ahead and apply retention, as the owner.")
    maintain.add_argument("--dsn", required=True, help="PostgreSQL connection string of the tables' owner")
    maintain.add_argument("--config", help="receiver TOML whose [retention] and [maintenance] apply "
                          "(default: the built-in defaults)")
    maintain.set_defaults(handler=lazy("cloud.store.maintain:run_maintain"))

    ingest = cloud.add_parser("ingest", help="Receive device messages from MQTT into the store.")
    ingest.add_argument("--config", required=True, help="receiver TOML config")
    ingest.set_defaults(handler=lazy("cloud.ingest.commands:run_ingest"))

    api = cloud.add_parser("api", help="Serve the lender's HTTP API (devices, events, commands, audit).",
                           description="Serve the HTTP API (docs/api.md) with uvicorn on [api] host:port.")
    api.add_argument("--config", required=True, help="API TOML config (deploy/api/api.toml)")
    api.set_defaults(handler=lazy("cloud.api.cli:run_api"))

    keys = cloud.add_parser("keys", help="Create, list and revoke API keys.")
    key_actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    key_handler = lazy("cloud.api.cli:run_keys")
    key_add = key_actions.add_parser("add", help="Create a key; prints its token once.")
    key_add.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    key_add.add_argument("--user", required=True, help="whose key (account managers: the assignment name)")
    key_add.add_argument("--role", required=True,
                         choices=["admin", "risk_officer", "account_manager", "auditor"])
    key_add.set_defaults(handler=key_handler)
    key_list = key_actions.add_parser("list", help="List keys (never their secrets).")
    key_list.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    key_list.add_argument("--json", action="store_true", help="print JSON")
    key_list.set_defaults(handler=key_handler)
    key_revoke = key_actions.add_parser("revoke", help="Revoke a key at once.")
    key_revoke.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    key_revoke.add_argument("--id", required=True, help="key id (from `keys list`)")
    key_revoke.set_defaults(handler=key_handler)

    devices = cloud.add_parser("devices", help="Register, list and remove devices.")
    actions = devices.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    handler = lazy("cloud.store.commands:run_devices")
    add = actions.add_parser("add", help="Register a device (its certificate common name).")
    add.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    add.add_argument("--id", required=True, help="device id = certificate common name")
    add.add_argument("--vin", help="vehicle identification number (17 characters)")
    add.add_argument("--cert-fingerprint", help="SHA-256 fingerprint of the device certificate")
    add.add_argument("--time-zone", default="UTC", help="IANA time zone of the vehicle's home")
    add.add_argument("--region", default="", help="contract region")
    add.add_argument("--poi", action="append", default=[], metavar="NAME:LAT,LON[,RADIUS_M[,KIND]]",
                     help="a point of interest (repeatable)")
    replace = actions.add_parser("replace", help="A new tracker for a registered device: sign its CSR, "
                                 "revoke the old certificate(s).")
    replace.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    replace.add_argument("--id", required=True, help="device id = certificate common name")
    for command, required in ((add, False), (replace, True)):
        command.add_argument("--csr", required=required,
                             help="the device's CSR (`lienwatch edge provision`): signed with the device CA")
        command.add_argument("--ca-dir", help="with --csr: the device CA directory (ca.crt, ca.key, ca-db/)")
        command.add_argument("--cert-out", help="with --csr: where to write the signed certificate")
        command.add_argument("--cert-days", type=int, default=825, help="with --csr: validity in days")
    add.set_defaults(handler=handler)
    replace.set_defaults(handler=handler)
    listing = actions.add_parser("list", help="List registered devices.")
    listing.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=handler)
    remove = actions.add_parser("remove", help="Unregister a device (its data is kept).")
    remove.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    remove.add_argument("--id", required=True, help="device id")
    remove.set_defaults(handler=handler)

    pki.register(cloud)
