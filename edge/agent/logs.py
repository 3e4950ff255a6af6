"""Structured logs: one JSON object per line on stderr (journald keeps them), secrets redacted.

Use `logging.getLogger("lienwatch.…").info("what happened", extra={"key": value})`; extra keys
become JSON fields. Any field whose name suggests a secret (key, password, token, secret,
signature, private) is replaced by "[redacted]" whatever its value — a log line never carries a
private key or a command signature even if a caller passes one by mistake.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import TextIO

from lienwatch.clock import Clock, SystemClock

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}
_SECRET = re.compile(r"(key|password|passwd|token|secret|signature|private|credential)", re.IGNORECASE)
REDACTED = "[redacted]"


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts (UTC ns), level, logger, msg, then extra fields."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or SystemClock()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts_ns": self.clock.wall_ns(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name in _STANDARD or name.startswith("_"):
                continue
            line[name] = REDACTED if _SECRET.search(name) else _plain(value)
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(line, separators=(",", ":"), default=str)


def _plain(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"  # payloads are logged by size, never by content
    return value


def configure(level: str = "info", stream: TextIO | None = None, clock: Clock | None = None) -> None:
    """Send the `lienwatch` loggers to `stream` (stderr) as JSON lines at `level`."""
    logger = logging.getLogger("lienwatch")
    for handler in list(logger.handlers):
        if getattr(handler, "_lienwatch_json", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter(clock))
    handler._lienwatch_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def set_level(level: str) -> None:
    logging.getLogger("lienwatch").setLevel(level.upper())
