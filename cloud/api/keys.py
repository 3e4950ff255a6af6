"""API keys in the store: created with a random secret shown once, kept only as its SHA-256.

A key is `lw_<key_id>_<secret>`: `key_id` (12 characters a-z 0-9) finds the row, the secret
(32 random bytes, base64url) is compared by hash in constant time. A fast hash is right here:
the secret is 256 random bits, not a password, so there is nothing to guess offline.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

from cloud.store.db import Conn
from lienwatch.errors import LienwatchError


class Role(StrEnum):
    """What a key may do (docs/api.md "Roles")."""

    ADMIN = "admin"  # everything, including keys and assignments
    RISK_OFFICER = "risk_officer"  # every device: data, events, commands
    ACCOUNT_MANAGER = "account_manager"  # assigned devices only, recent positions, no cabin detail
    AUDITOR = "auditor"  # the audit log only


class ApiKeyError(LienwatchError):
    """An API key operation was refused (bad user name or role, unknown key)."""


_TOKEN = re.compile(r"lw_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never its secret)."""

    key_id: str
    user_name: str
    role: Role
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def check_user_name(user_name: object) -> str:
    if not isinstance(user_name, str) or not USER_NAME.fullmatch(user_name):
        raise ApiKeyError(
            f"user name {user_name!r} is invalid: 1-64 characters of A-Z a-z 0-9 . _ @ -, "
            "starting with a letter or digit"
        )
    return user_name


def check_role(role: object) -> Role:
    try:
        return Role(str(role))
    except ValueError:
        raise ApiKeyError(f"role {role!r} is unknown (known: {', '.join(r.value for r in Role)})") from None


def create_key(conn: Conn, user_name: str, role: Role | str, created_by: str = "") -> tuple[ApiKey, str]:
    """A new key for `user_name` with `role`; returns it and the bearer token (shown only now)."""
    user_name, role = check_user_name(user_name), check_role(role)
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    secret = secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_keys (key_id, user_name, role, secret_sha256, created_by) "
        "VALUES (%s, %s, %s, %s, %s) "
        "RETURNING created_at",
        (key_id, user_name, role.value, _hash(secret), created_by),
    ).fetchone()
    assert row is not None
    return ApiKey(key_id, user_name, role, row[0], created_by, None), f"lw_{key_id}_{secret}"


def list_keys(conn: Conn) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    rows = conn.execute(
        "SELECT key_id, user_name, role, created_at, created_by, revoked_at FROM api_keys "
        "ORDER BY created_at, key_id"
    ).fetchall()
    return [ApiKey(r[0], r[1], Role(r[2]), r[3], r[4], r[5]) for r in rows]


def revoke_key(conn: Conn, key_id: str) -> bool:
    """Revoke a key at once; False if there is no such key (revoking twice is not an error)."""
    if not isinstance(key_id, str) or not re.fullmatch(r"[a-z0-9]{12}", key_id):
        raise ApiKeyError(
            f"key id {key_id!r} is invalid: 12 characters a-z 0-9 (see `lienwatch cloud keys list`)"
        )
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = %s RETURNING 1",
        (key_id,),
    ).fetchone()
    return row is not None


def parse_token(token: str) -> tuple[str, bytes] | None:
    """(key id, SHA-256 of the secret) of a well-formed bearer token, else None."""
    match = _TOKEN.fullmatch(token)
    return None if match is None else (match[1], _hash(match[2]))


KEY_COLUMNS = "key_id, user_name, role, created_at, created_by, revoked_at, secret_sha256"


def live_key(row: tuple[Any, ...] | None, secret_sha256: bytes) -> ApiKey | None:
    """The key of a `KEY_COLUMNS` row if the secret's hash matches (constant time) and it is not
    revoked; None otherwise (no row included, at the same cost)."""
    if row is None:
        hmac.compare_digest(secret_sha256, bytes(32))  # the same work whether the id exists or not
        return None
    if not hmac.compare_digest(secret_sha256, bytes(row[6])) or row[5] is not None:
        return None
    return ApiKey(row[0], row[1], Role(row[2]), row[3], row[4], row[5])


def authenticate(conn: Conn, token: str) -> ApiKey | None:
    """The live key a bearer token belongs to, or None (malformed, unknown, wrong secret, revoked)."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    try:
        row = conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = %s",  # type: ignore[arg-type]
                           (parsed[0],)).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return live_key(row, parsed[1])
