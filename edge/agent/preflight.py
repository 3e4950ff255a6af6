"""Before `edge run` starts anything: every file and directory the agent config names is usable.

`load_config` checks values; this checks the machine: the state directory (the outbox lives in
it) and the status file's directory exist or can be created and are writable, the command keys
parse, and the TLS material loads (lienwatch.tls). A problem is a `ConfigError` naming the key,
so a bad deployment exits 2 with one line instead of a traceback from deep inside the agent.
Certificate dates only warn: a gateway may boot with its clock unset (1970 or its build date)
until GNSS or NTP sets it, and an agent with an expired certificate still records to flash.
`edge status` does not run this (it only reads the status file, often as another user).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from edge.agent.config import AgentConfig
from edge.agent.downlink import load_command_keys
from lienwatch.clock import Clock
from lienwatch.errors import ConfigError
from lienwatch.tls import check_tls_files


def preflight(config: AgentConfig, clock: Clock) -> list[str]:
    """Check the paths the config names; ConfigError on the first unusable one, else warnings."""
    state_dir = Path(str(config["agent.state_dir"]))
    writable_dir(state_dir, "agent.state_dir")
    writable_dir(state_dir / "outbox", "agent.state_dir", what="the outbox directory")
    status_file = Path(str(config["agent.status_file"]))
    if status_file.is_dir():
        raise ConfigError(f"agent.status_file: {status_file} is a directory; name a file")
    writable_dir(status_file.parent, "agent.status_file", what="the status file's directory")
    load_command_keys(Path(str(config["downlink.command_keys"])))
    dates = check_tls_files(
        *((f"uplink.mqtt.{name}", Path(str(config[f"uplink.mqtt.{name}"])))
          for name in ("ca_file", "cert_file", "key_file")))
    now_s = clock.wall_ns() / 1e9
    return [problem for d in dates if (problem := d.problem(now_s))]


def writable_dir(path: Path, key: str, *, what: str = "") -> None:
    """`path` is a directory this process can create files in (created if missing)."""
    label = f"{key}: {what + ' ' if what else ''}{path}"
    uid = os.getuid()
    try:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{label} is a file, not a directory")
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a dangling symlink, or created as a file meanwhile
        raise ConfigError(f"{label} exists and is not a directory") from None
    except OSError as error:
        raise ConfigError(f"{label} cannot be created: {error.strerror} (running as uid {uid})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".lienwatch-write-test-")
    except OSError as error:
        raise ConfigError(f"{label} is not writable: {error.strerror} (running as uid {uid})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
