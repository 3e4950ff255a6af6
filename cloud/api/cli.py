"""Handlers of `lienwatch cloud api --config FILE` and `lienwatch cloud keys add|list|revoke`."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING, Any

from cloud.api.keys import ApiKeyError, check_role, check_user_name, create_key, list_keys, revoke_key
from cloud.store.db import connect, describe
from cloud.store.migrate import check_schema

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cloud.api.config import ApiConfig


def uvicorn_options(config: ApiConfig) -> dict[str, Any]:
    """How uvicorn serves the API on [api] host:port (one process or each worker)."""
    return {
        "host": config.host,
        "port": config.port,
        "log_level": "info",
        "access_log": config.access_log,
        "http": "httptools",  # the C parser: h11, uvicorn's default, costs ~3x the CPU a request
        "loop": "uvloop",  # libuv's event loop: less CPU a request than asyncio's (bench/api.py)
        "ws": "none",  # no WebSocket routes: an Upgrade request is plain HTTP (and counted, workers.py)
        "proxy_headers": False,
        "server_header": False,
        "date_header": True,
    }


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(app: FastAPI, config: ApiConfig) -> None:
    """Serve `app` with uvicorn on [api] host:port until interrupted."""
    import uvicorn

    uvicorn.run(app, **uvicorn_options(config))


def run_api(args: argparse.Namespace) -> int:
    """`lienwatch cloud api --config FILE`."""
    from cloud.api.app import create_app
    from cloud.api.config import load_config

    config = load_config(args.config)
    configure_logging()
    if config.api.workers > 1:
        from cloud.api.workers import serve_workers

        serve_workers(args.config, config.api)
    else:
        serve(create_app(config), config.api)
    return 0


def run_keys(args: argparse.Namespace) -> int:
    # Every argument is checked before the database is contacted.
    if args.keys_command == "add":
        user, role = check_user_name(args.user), check_role(args.role)
    with connect(args.dsn, application_name="lienwatch-keys") as conn:
        check_schema(conn)
        if args.keys_command == "add":
            key, token = create_key(conn, user, role, created_by="cli")
            print(f"created key {key.key_id} for {key.user_name} ({key.role.value}) in {describe(conn)}")
            print(f"token (shown only now): {token}")
            return 0
        if args.keys_command == "revoke":
            if not revoke_key(conn, args.id):
                raise ApiKeyError(f"no API key {args.id} in {describe(conn)}")
            print(f"revoked key {args.id}")
            return 0
        keys = list_keys(conn)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "key_id": k.key_id,
                        "user_name": k.user_name,
                        "role": k.role.value,
                        "created_at": k.created_at.isoformat(),
                        "created_by": k.created_by,
                        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    }
                    for k in keys
                ],
                indent=2,
            )
        )
        return 0
    print(f"{'KEY':<13} {'USER':<24} {'ROLE':<16} {'CREATED':<20} REVOKED")
    for k in keys:
        print(
            f"{k.key_id:<13} {k.user_name:<24} {k.role.value:<16} {k.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{f'{k.revoked_at:%Y-%m-%d %H:%M:%S}' if k.revoked_at else '-'}"
        )
    print(f"{len(keys)} key(s)")
    return 0
