"""Small JSON state files in the agent's state directory, replaced atomically and fsynced."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Write `data` to `path` as JSON via a temp file, fsync, rename: a crash leaves the old or
    the new file, never half of one. OSError/TypeError/ValueError propagate to the caller."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
