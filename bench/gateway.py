"""The packaged agent in a Debian target root (arm64 under qemu-user): install, provision, drive, upgrade.

`make gateway-test` runs this after `deploy/gateway/gateway.sh deb ARCH`. In the root
($GATEWAY_ROOTS/root-ARCH, by default /var/cache/lienwatch/gateway/root-ARCH, made by debootstrap)
it installs lienwatch-agent_*.deb with dpkg, provisions the device there (`lienwatch edge
provision`: key and CSR made in the root; the CSR signed on the host with the test device CA, as
the cloud would; `edge install-cert`), then runs the installed
`lienwatch edge run` as the package's system user for `--seconds` against the HIL car on the host
(hil.vehicle.EmulatedVehicle: OBD-II ECUs over udp_multicast on ff11::, GNSS on a pty, fake sysfs)
and the shipped mosquitto config on loopback (mutual TLS). A chroot shares the host's network and,
with /dev bound into it, its ptys. Then the package's lifecycle: an upgrade keeps the outbox and
the keys, removal keeps them, purge deletes them and the system user.

RSS is the qemu-user process's (the emulator's own memory included: an upper bound of the agent's
on a board). Fails (exit 1) when a source delivered nothing, nothing was acknowledged by the broker,
or the package lifecycle lost or kept the wrong files.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import print_json_line, print_table  # noqa: E402

DEVICE = "gw-hil-1"


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """/proc, /dev and /dev/pts of the host inside `root` while the block runs, holding the root's
    lock (gateway.sh's: the roots are shared by the clones on this machine)."""
    done: list[Path] = []
    lock = open(root.parent / f"{root.name}.use", "w")  # noqa: SIM115 (held until the finally)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        for target, args in ((root / "proc", ["-t", "proc", "proc"]), (root / "dev", ["--bind", "/dev"]),
                             (root / "dev/pts", ["--bind", "/dev/pts"])):
            subprocess.run(["mount", *args, str(target)], check=True)
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", str(target)], check=False)
        lock.close()


def chroot(root: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
           "PIP_CERT": "/etc/ssl/certs/host-ca-bundle.crt"}
    result = subprocess.run(["chroot", str(root), *command], capture_output=True, text=True, env=env,
                            check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"in the root: {' '.join(command)} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout)[-2000:]}")
    return result


def _ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise RuntimeError(f"the package made no user {user!r} in the root")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _template(sources_toml: str, example: Path = REPO / "deploy/agent.example.toml") -> str:
    """The example config (the package's own: it matches the packaged agent's schema) with the HIL
    car's sources instead of the example's."""
    text = example.read_text()
    head, _, rest = text.partition("# --- sources")
    _, _, tail = rest.partition("# --- the vehicle")
    head = head.replace('status_interval_s = 2.0', 'status_interval_s = 1.0', 1)
    # a telemetry batch every 5 s (30 s shipped): the broker acknowledges some within a short run
    head = head.replace("batch_interval_s = 30.0", "batch_interval_s = 5.0", 1)
    return head + sources_toml + "\n# --- the vehicle" + tail


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_agent(root: Path, deb: Path, seconds: float) -> dict[str, Any]:
    from cloud.enroll import sign_csr
    from hil.services import start_mosquitto
    from hil.testpki import make_test_etc
    from hil.vehicle import EmulatedVehicle
    from protocol.signing import generate_key, public_key_to_pem

    work_in_root = Path(tempfile.mkdtemp(prefix="gw-", dir=root / "tmp"))
    work_in_root.chmod(0o755)  # the agent runs as the package's user: it reads the fake sysfs below
    inside = Path("/") / work_in_root.relative_to(root)  # the same directory as the root sees it
    cloud = make_test_etc(Path(tempfile.mkdtemp(prefix="lienwatch-gw-cloud-")), ["spare"])
    shutil.copy(deb, work_in_root / deb.name)
    result: dict[str, Any] = {}
    started = time.monotonic()
    chroot(root, "dpkg", "-i", str(inside / deb.name))
    result["dpkg_install_s"] = time.monotonic() - started
    du = subprocess.run(["du", "-sk", str(root / "opt/lienwatch")], capture_output=True, text=True,
                        check=True)
    result["installed_kb"] = int(du.stdout.split()[0])
    # python-can's udp_multicast (the emulated bus) needs msgpack; a real gateway's SocketCAN does not.
    chroot(root, "/opt/build-venv/bin/pip", "--python", "/opt/lienwatch/bin/python", "install", "--quiet",
           "msgpack")
    broker = start_mosquitto(REPO / "deploy/mosquitto/lienwatch.conf",
                             path_map={"/etc/lienwatch/": f"{cloud}/"})
    agent: subprocess.Popen[bytes] | None = None
    try:
        with EmulatedVehicle(work_in_root / "hil", gnss_hz=1.0) as car:
            sources = car.agent_sources_toml().replace(str(work_in_root), str(inside))
            example = root / "opt/lienwatch/share/agent.example.toml"
            (work_in_root / "agent.template.toml").write_text(_template(sources, example))
            started = time.monotonic()
            chroot(root, "/opt/lienwatch/bin/lienwatch", "edge", "provision", "--id", DEVICE, "--host",
                   "localhost", "--port", str(broker.ports[8883]), "--vin", "WVWZZZ1KZAW000001",
                   "--time-zone", "Europe/Zurich", "--template", str(inside / "agent.template.toml"))
            result["provision_s"] = time.monotonic() - started
            cert = work_in_root / "device.crt"
            sign_csr(cloud / "pki", root / "etc/lienwatch/pki/device.csr", DEVICE, cert)
            shutil.copy(cloud / "pki/ca.crt", work_in_root / "ca.crt")
            chroot(root, "/opt/lienwatch/bin/lienwatch", "edge", "install-cert",
                   "--cert", str(inside / "device.crt"), "--ca-file", str(inside / "ca.crt"))
            keys = root / "etc/lienwatch/command-keys.pem"
            keys.write_bytes(public_key_to_pem(generate_key().public_key()))
            uid, gid = _ids(root, "lienwatch")
            os.chown(car.gnss_device, uid, -1)  # a board's serial GNSS: the dialout group (the unit's)
            run_dir = root / "run/lienwatch"
            run_dir.mkdir(parents=True, exist_ok=True)
            os.chown(run_dir, uid, gid)
            status_path = run_dir / "status.json"
            status_path.unlink(missing_ok=True)
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "2",
                   "PYTHONUNBUFFERED": "1"}
            log_path = work_in_root / "agent.log"
            with open(log_path, "wb") as log:
                started = time.monotonic()
                agent = subprocess.Popen(
                    [shutil.which("chroot") or "/usr/sbin/chroot", f"--userspec={uid}:{gid}",
                     f"--groups={gid}", str(root),
                     "/opt/lienwatch/bin/lienwatch", "edge", "run", "--config", "/etc/lienwatch/agent.toml"],
                    stdout=log, stderr=log, env=env)
            while not status_path.exists() and agent.poll() is None and time.monotonic() - started < 180:
                time.sleep(0.2)
            if agent.poll() is not None or not status_path.exists():
                raise RuntimeError(f"the agent did not start: {log_path.read_text()[-3000:]}")
            result["startup_s"] = time.monotonic() - started
            t0, rss = time.monotonic(), 0.0
            first = json.loads(status_path.read_text())
            while time.monotonic() - t0 < seconds and agent.poll() is None:
                time.sleep(1.0)
                rss = max(rss, _rss_mb(agent.pid))
            window = time.monotonic() - t0
            last = json.loads(status_path.read_text())
            agent.send_signal(signal.SIGTERM)
            result["exit_code"] = agent.wait(60)
            agent = None
    finally:
        if agent is not None:
            agent.kill()
            agent.wait(10)
        broker.stop()
        shutil.rmtree(cloud, ignore_errors=True)
    result.update(window_s=window, rss_mb=rss, log_tail=(work_in_root / "agent.log").read_text()[-1500:],
                  samples={name: s["samples"] - first["sources"].get(name, {}).get("samples", 0)
                           for name, s in last["sources"].items()},
                  states={name: s["state"] for name, s in last["sources"].items()},
                  acknowledged=last["uplink"]["acknowledged"], queued=last["queue"])
    shutil.rmtree(work_in_root, ignore_errors=True)
    return result


def package_lifecycle(root: Path, deb: Path) -> dict[str, bool]:
    """Upgrade (a higher version of the same package) keeps outbox and keys; remove keeps them;
    purge deletes them and the system user."""
    work = Path(tempfile.mkdtemp(prefix="lienwatch-gw-deb-"))
    try:
        unpacked = work / "pkg"
        subprocess.run(["dpkg-deb", "-R", str(deb), str(unpacked)], check=True)
        control = unpacked / "DEBIAN/control"
        lines = control.read_text().splitlines()
        version = next(line.split(": ", 1)[1] for line in lines if line.startswith("Version: "))
        control.write_text("\n".join(f"Version: {version}+upgrade1" if line.startswith("Version: ") else line
                                     for line in lines) + "\n")
        newer = root / "tmp" / "lienwatch-agent-upgrade.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", str(unpacked), str(newer)],
                       check=True, capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    key, outbox = root / "etc/lienwatch/pki/device.key", root / "var/lib/lienwatch/agent/outbox"
    marker = outbox / "lifecycle-marker"
    outbox.mkdir(parents=True, exist_ok=True)
    marker.write_bytes(os.urandom(64))
    key_sha, marker_sha = _sha(key), _sha(marker)
    checks: dict[str, bool] = {}
    chroot(root, "dpkg", "-i", "/tmp/lienwatch-agent-upgrade.deb")
    status = chroot(root, "dpkg-query", "-W", "-f=${Version}", "lienwatch-agent").stdout
    checks["upgraded"] = status.endswith("+upgrade1")
    checks["upgrade keeps key"] = key.exists() and _sha(key) == key_sha
    checks["upgrade keeps outbox"] = marker.exists() and _sha(marker) == marker_sha
    chroot(root, "dpkg", "-r", "lienwatch-agent")
    checks["remove deletes /opt/lienwatch"] = not (root / "opt/lienwatch").exists()
    checks["remove keeps key and outbox"] = key.exists() and marker.exists()
    chroot(root, "dpkg", "-P", "lienwatch-agent")
    checks["purge deletes state and keys"] = not (root / "var/lib/lienwatch").exists() and \
        not (root / "etc/lienwatch").exists()
    checks["purge deletes the user"] = "lienwatch:" not in (root / "etc/passwd").read_text()
    (root / "tmp/lienwatch-agent-upgrade.deb").unlink(missing_ok=True)
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="arm64", choices=["amd64", "arm64", "armhf"])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window of the agent's run")
    args = parser.parse_args()
    root = Path(os.environ.get("GATEWAY_ROOTS", "/var/cache/lienwatch/gateway")) / f"root-{args.arch}"
    debs = sorted((REPO / "build/gateway").glob(f"lienwatch-agent_*_{args.arch}.deb"), key=os.path.getmtime)
    if not root.is_dir() or not debs:
        print(f"no root {root} or package for {args.arch}: run `make gateway` first", file=sys.stderr)
        return 1
    deb = debs[-1]
    hosts = root / "etc/hosts"  # debootstrap's minbase has none: `localhost` must resolve in the root
    if "localhost" not in (hosts.read_text() if hosts.exists() else ""):
        with hosts.open("a") as file:
            file.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    with mounted(root):
        chroot(root, "dpkg", "-P", "lienwatch-agent", check=False)  # a clean start
        run = run_agent(root, deb, args.seconds)
        checks = package_lifecycle(root, deb)
    machine = chroot(root, "uname", "-m").stdout.strip()
    print_table(f"lienwatch-agent on {args.arch} ({machine} in the root; {run['window_s']:.0f} s measured)",
                ["what", "value"],
                [["package", f"{deb.name} ({deb.stat().st_size / 1024:.0f} kB)"],
                 ["installed /opt/lienwatch (kB)", run["installed_kb"]],
                 ["dpkg -i (s)", run["dpkg_install_s"]], ["edge provision (s)", run["provision_s"]],
                 ["agent start to first status (s)", run["startup_s"]],
                 [f"agent RSS max (MB{', the qemu-user process' if machine != os.uname().machine else ''})",
                  run["rss_mb"]],
                 ["acknowledged by the broker (records)", run["acknowledged"]],
                 ["exit code on SIGTERM", run["exit_code"]]])
    print_table("Samples per source in the window", ["source", "samples", "state"],
                [[name, count, run["states"][name]] for name, count in sorted(run["samples"].items())])
    print_table("Package lifecycle", ["check", "ok"], [[name, ok] for name, ok in checks.items()])
    failures = [f"source {name} delivered nothing" for name, count in run["samples"].items() if count <= 0]
    if run["acknowledged"] <= 0:
        failures.append("the broker acknowledged nothing")
    if run["exit_code"] != 0:
        failures.append(f"the agent exited with {run['exit_code']}")
    failures += [f"package lifecycle: {name}" for name, ok in checks.items() if not ok]
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if failures:
        print(run["log_tail"], file=sys.stderr)
    print_json_line({"arch": args.arch, "deb_kb": round(deb.stat().st_size / 1024),
                     "installed_kb": run["installed_kb"],
                     "agent_rss_mb_qemu": round(run["rss_mb"], 1), "startup_s": round(run["startup_s"], 1),
                     "samples_per_s": {k: round(v / run["window_s"], 2) for k, v in run["samples"].items()},
                     "acknowledged": run["acknowledged"], "lifecycle_ok": all(checks.values())})
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
