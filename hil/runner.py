"""`lienwatch hil run SCENARIO...`: play scenarios against the whole chain, check what the lender sees.

For a run the bench starts (or is given) a PostgreSQL with the schema, a throwaway PKI, mosquitto
from the shipped production config (mutual TLS, per-device ACL), the real receiver
(`lienwatch cloud ingest`) and, when the API package is installed, the real API. Each scenario gets
its own registered device and its own agent process (`python -m hil.player`: the real agent and
the emulated car on one simulation clock, see hil/player.py). The runner answers the player's
requests (take the broker down, bring it back, SIGKILL me — then it starts the agent again on the
same state directory), waits until every record the agent accepted is stored, and checks the
scenario's expectations against `hil.lender` (the API, else the store). Output: a progress line
per step, a pass/fail table with measured detection latencies, and in the output folder one PNG
per scenario (track with events, event timeline, 12 V / backup / SoC), `report.json` and
`junit.xml`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.lender import SEVERITY_RANK, ApiView, LenderView, SeenEvent, stored_rows, to_ns
from hil.scenario_file import ExpectedInterrupt, Scenario, ScenarioError, load_scenario
from lienwatch.errors import ServiceError

HERE = Path(__file__).resolve().parent
SCENARIO_DIR = HERE / "scenarios"
REPO = HERE.parent
DETECTORS = ("battery", "driving", "geofence", "gnss_jamming", "night_cabin", "odometer", "risky_places",
             "tamper", "tow", "unplug", "usage")
DEFAULT_VEHICLE: dict[str, Any] = {
    "contract_region": [[46.8, 8.0], [46.8, 9.4], [47.8, 9.4], [47.8, 8.0]],
    "places": [{"name": "Automarkt Nord", "class": "used_car_market", "lat": 47.4102, "lon": 8.5489,
                "radius_m": 300.0}],
}
Say = Callable[[str], None]
# a scenario that sends commands gets a starter-interrupt relay on a file (the sysfs GPIO layout)
RELAY_HOLD_S = 30.0


def resolve(names: Sequence[str]) -> list[Path]:
    """Scenario names (`night_tow`), paths, or `all` → files; ScenarioError for an unknown one."""
    out: list[Path] = []
    for name in names:
        if name == "all":
            out.extend(sorted(SCENARIO_DIR.glob("*.toml")))
            continue
        path = Path(name)
        if not path.exists():
            path = SCENARIO_DIR / f"{name.removesuffix('.toml')}.toml"
        if not path.exists():
            known = ", ".join(p.stem for p in sorted(SCENARIO_DIR.glob("*.toml")))
            raise ScenarioError(f"no scenario {name!r} (a file, or one of: {known}, all)")
        out.append(path)
    return out


@dataclass
class Outcome:
    """One expectation's verdict."""

    what: str
    ok: bool
    detail: str = ""
    latency_s: float | None = None


@dataclass
class Played:
    """What one scenario run produced and how it was judged."""

    scenario: Scenario
    device_id: str
    marks: dict[str, int] = field(default_factory=dict)
    track: list[dict[str, Any]] = field(default_factory=list)
    events: list[SeenEvent] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    power: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    interrupt: dict[str, Any] = field(default_factory=dict)  # GET /devices/{id} .starter_interrupt
    wall_s: float = 0.0
    sim_s: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(o.ok for o in self.outcomes)


class Bench:
    """The services of a run: database, broker (shipped config, mutual TLS), receiver."""

    def __init__(self, work: Path, devices: Sequence[str], say: Say, dsn: str | None = None) -> None:
        self.work, self.say, self.devices = work, say, list(devices)
        self._stack = contextlib.ExitStack()
        self.given_dsn = dsn
        self.dsn = dsn or ""
        self.receiver: subprocess.Popen[bytes] | None = None
        self.view: LenderView | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.api_url: str | None = None
        self.api_key = ""
        self.clock_offset_file: Path | None = None
        self.command_keys: Path | None = None

    def __enter__(self) -> Bench:
        from hil.services import REPO_ROOT, start_mosquitto, start_postgres
        from hil.testpki import make_test_etc

        try:
            if self.given_dsn is None:
                self.say("starting an embedded PostgreSQL on a free loopback port ...")
                pg = self._stack.enter_context(start_postgres(self.work / "postgres"))
                self.dsn = pg.dsn
            _cli("cloud", "migrate", "--dsn", self.dsn)
            for index, device in enumerate(self.devices, 1):
                _cli("cloud", "devices", "add", "--dsn", self.dsn, "--id", device, "--vin", vin_for(index),
                     "--time-zone", "Europe/Zurich", "--region", "CH")
            self.etc = make_test_etc(self.work / "etc", self.devices)
            for device in self.devices:
                (self.etc / "pki/devices" / f"{device}.key").chmod(0o600)
            self.broker = self._stack.enter_context(start_mosquitto(
                REPO_ROOT / "deploy/mosquitto/lienwatch.conf", path_map={"/etc/lienwatch/": f"{self.etc}/"},
                work_dir=self.work / "mqtt"))
            self.say("mosquitto (shipped config, mutual TLS, per-device ACL) on "
                     f"127.0.0.1:{self.broker.port}")
            self.start_receiver()
            self._stack.callback(self.stop_receiver)
            self.view = self.start_api()
            self.say(f"receiver running; {len(self.devices)} devices registered; expectations are read "
                     f"from the {self.view.name}")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def cleanup(self, path: Path) -> None:
        """Remove `path` when the bench closes."""
        self._stack.callback(shutil.rmtree, path, ignore_errors=True)

    def start_receiver(self) -> None:
        pki = self.etc / "pki"
        config = self.work / "receiver.toml"
        config.write_text(f"""receiver_id = "hil-receiver"
[database]
dsn = {json.dumps(self.dsn)}
[mqtt]
host = "127.0.0.1"
port = {self.broker.ports[8884]}
client_id = "hil-receiver"
[mqtt.tls]
ca_file = "{pki}/ca.crt"
cert_file = "{pki}/services/lienwatch-ingest.crt"
key_file = "{pki}/services/lienwatch-ingest.key"
[ingest]
batch_max_delay_ms = 5
receipt_interval_ms = 5
max_future_s = 31622400
[retention]
signals_days = 3650
status_days = 3650
[metrics]
port = 0
[maintenance]
summaries_interval_s = 3600.0
""")
        log = (self.work / "receiver.log").open("ab")
        self.receiver = subprocess.Popen([sys.executable, "-m", "lienwatch", "cloud", "ingest", "--config",
                                          str(config)], stdout=log, stderr=log, cwd=REPO)

    def stop_receiver(self) -> None:
        _stop(self.receiver)

    def start_api(self) -> LenderView:
        """The real API (`lienwatch cloud api`) on a free loopback port, and a risk officer's key."""
        from hil.services import free_port, wait_for_port
        from protocol.signing import generate_key, private_key_to_pem, public_key_to_pem

        port = free_port()
        signing = generate_key()  # the lender's command signing key; the agents trust its public half
        key_file = self.work / "command.key"
        key_file.write_bytes(private_key_to_pem(signing))
        key_file.chmod(0o600)
        self.command_keys = self.work / "command-keys.pem"
        self.command_keys.write_bytes(public_key_to_pem(signing.public_key()))
        self.clock_offset_file = self.work / "api-clock-offset"
        pki = self.etc / "pki"
        config = self.work / "api.toml"
        config.write_text(f"[database]\ndsn = {json.dumps(self.dsn)}\n"
                          f"[api]\nhost = \"127.0.0.1\"\nport = {port}\n"
                          f"command_signing_key_file = {json.dumps(str(key_file))}\n"
                          f"[mqtt]\nhost = \"127.0.0.1\"\nport = {self.broker.ports[8884]}\n"
                          f"client_id = \"lienwatch-api\"\n[mqtt.tls]\n"
                          f"ca_file = \"{pki}/ca.crt\"\ncert_file = \"{pki}/services/lienwatch-api.crt\"\n"
                          f"key_file = \"{pki}/services/lienwatch-api.key\"\n")
        made = _cli("cloud", "keys", "add", "--dsn", self.dsn, "--user", "hil-bench",
                    "--role", "risk_officer")
        token = made.split("token (shown only now):", 1)[1].split()[0]
        log = (self.work / "api.log").open("ab")
        # the real API app, its clock following the simulation when commands are signed (hil/bench_api.py)
        self.api = subprocess.Popen([sys.executable, "-m", "hil.bench_api", str(config),
                                     str(self.clock_offset_file)], stdout=log, stderr=log, cwd=REPO)
        self._stack.callback(self.stop_api)
        try:
            wait_for_port(port, 60, self.api)
        except ServiceError as error:  # the scratch directory goes with the run: say why here
            log.flush()
            tail = (self.work / "api.log").read_text(errors="replace")[-3000:]
            raise ServiceError(f"the API did not start: {error}; its log ends:\n{tail}") from None
        self.api_url, self.api_key = f"http://127.0.0.1:{port}", token
        return ApiView(self.api_url, token)

    def stop_api(self) -> None:
        _stop(self.api)

    def set_api_clock(self, sim_wall_ns: int | None) -> None:
        """Let the API's wall clock stand at the simulation's time (None: real time again)."""
        assert self.clock_offset_file is not None
        offset = 0 if sim_wall_ns is None else sim_wall_ns - time.time_ns()
        temporary = self.clock_offset_file.with_suffix(".tmp")
        temporary.write_text(f"{offset}\n")
        temporary.replace(self.clock_offset_file)

    def send_command(self, device: str, command: str, reason: str, sim_wall_ns: int) -> str:
        """POST /devices/{device}/commands as the bench's risk officer; the command id."""
        import httpx

        assert self.api_url is not None
        self.set_api_clock(sim_wall_ns)
        answer = httpx.post(f"{self.api_url}/devices/{device}/commands", timeout=30.0,
                            headers={"Authorization": f"Bearer {self.api_key}"},
                            json={"action": command, "params": {"reason": reason}})
        if answer.status_code != 201:
            raise ServiceError(f"POST /devices/{device}/commands {command}: "
                               f"{answer.status_code} {answer.text}")
        return str(answer.json()["command_id"])

    def device(self, device: str) -> dict[str, Any]:
        """GET /devices/{device} as the bench's risk officer."""
        import httpx

        answer = httpx.get(f"{self.api_url}/devices/{device}", timeout=30.0,
                           headers={"Authorization": f"Bearer {self.api_key}"})
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def agent_overrides(self, device: str, relay: Path | None = None) -> dict[str, Any]:
        """The agent's broker (mutual TLS), the API's command key and, with `relay`, a starter
        interrupt on that file (`sysfs:` output, the e2e test's layout)."""
        pki = self.etc / "pki"
        extra: dict[str, Any] = {}
        if self.command_keys is not None:
            extra["downlink"] = {"command_keys": str(self.command_keys)}
        if relay is not None:
            extra["actuators"] = {"starter_interrupt": {"output": f"sysfs:{relay}", "hold_s": RELAY_HOLD_S}}
        return {**extra, "uplink": {
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "ca_file": str(pki / "ca.crt"),
                     "cert_file": str(pki / f"devices/{device}.crt"),
                     "key_file": str(pki / f"devices/{device}.key"),
                     "reconnect_min_s": 0.2, "reconnect_max_s": 2.0, "connect_timeout_s": 10.0},
            # simulated seconds: the bench's clock runs far ahead of the network's round trips
            "receipts": {"timeout_s": 86400.0},
        }}


def _cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "lienwatch", *args], capture_output=True, text=True,
                            cwd=REPO)
    if result.returncode != 0:
        problem = (result.stderr or result.stdout).strip()[-1500:]
        raise ServiceError(f"lienwatch {' '.join(args[:2])} failed: {problem}")
    return result.stdout


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def vin_for(index: int) -> str:
    """The emulated car of the index-th scenario of a run (a registered device's VIN is unique)."""
    return f"WVWZZZ1KZAW{index:06d}"


def device_id_for(index: int, scenario: Scenario) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in scenario.path.stem.lower()).strip("-")
    return f"hil-{index:02d}-{slug}"[:64]


# -- playing one scenario -----------------------------------------------------------------------


def play(bench: Bench, scenario: Scenario, device: str, work: Path, say: Say, vin: str,
         first_drive_s: float | None = None) -> Played:
    """One scenario, start to end, judged. The agent's state directory (its outbox) is on tmpfs when
    there is one: it survives the agent's SIGKILL like flash does, without a disk's fsync cost."""
    played = Played(scenario, device)
    started = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    journal = work / "journal.txt"
    shm = Path("/dev/shm")
    state_dir = Path(tempfile.mkdtemp(prefix=f"lienwatch-hil-{device}-", dir=shm if shm.is_dir() else work))
    bench.cleanup(state_dir)
    relay: Path | None = None
    if scenario.commands:
        relay = work / "gpio17/value"
        relay.parent.mkdir(exist_ok=True)
        relay.write_text("0\n")
    job: dict[str, Any] = {
        "scenario": str(scenario.path), "device": device, "state_dir": str(state_dir),
        "journal": str(journal), "detectors": list(DETECTORS),
        "overrides": bench.agent_overrides(device, relay),
        "first_drive_s": first_drive_s,
    }
    scenario_vehicle = {**DEFAULT_VEHICLE, "vin": vin, **scenario.vehicle}
    job_path = work / "job.json"
    resume: dict[str, Any] | None = None
    killed_boots = 0
    while True:
        job["resume"] = resume
        job["vehicle"] = scenario_vehicle
        job_path.write_text(json.dumps(job))
        result = _run_player(bench, job_path, work, played, say)
        if result is None:
            break
        resume = result
        killed_boots += 1
        played.restarts += 1
        say(f"  agent SIGKILLed; started again on the same state directory (restart {killed_boots})")
    if played.error is None:
        _wait_stored(bench.dsn, device, journal, played)
        assert bench.view is not None
        played.events = bench.view.events(device)
        if scenario.interrupt is not None:
            played.interrupt = _wait_interrupt(bench, device, scenario.interrupt.state)
        judge(played, journal, bench.dsn)
    played.wall_s = time.monotonic() - started
    if played.track:
        played.sim_s = (played.track[-1]["t"] - scenario.start_ns) / 1e9
    return played


def _run_player(bench: Bench, job_path: Path, work: Path, played: Played, say: Say) -> dict[str, Any] | None:
    """Run one agent process to its end; a resume point if the scenario had it killed."""
    log = (work / "agent.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "hil.player", str(job_path)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=log, cwd=REPO, text=True, bufsize=1)
    assert process.stdout is not None and process.stdin is not None
    steps = played.scenario.steps
    try:
        for line in process.stdout:
            message = json.loads(line)
            kind = message["kind"]
            if kind == "track":
                played.track.append(message)
            elif kind == "mark":
                played.marks[message["name"]] = message["t"]
            elif kind == "step":
                index = message["index"]
                when = _local(message["t"], played)
                say(f"  step {index + 1}/{len(steps)} {steps[index].action} (sim {when})")
            elif kind == "request":
                what = message["what"]
                if what == "broker_down":
                    bench.broker.stop(remove=False)
                    say("  broker stopped")
                elif what == "broker_up":
                    bench.broker.restart()
                    say("  broker back")
                elif what == "command":
                    sent = bench.send_command(played.device_id, message["command"], message["reason"],
                                              message["t"])
                    say(f"  POST /devices/{played.device_id}/commands {message['command']} ({sent})")
                process.stdin.write("ok\n")
                process.stdin.flush()
            elif kind == "kill_me":
                process.send_signal(signal.SIGKILL)
                process.wait(30)
                return {"next_step": message["next_step"], "t": message["t"] + 10**9,
                        "model": message["model"], "bench": message["bench"],
                        "broker_down": message["broker_down"]}
            elif kind == "done":
                played.power, played.health = message["power"], message["health"]
        if bench.clock_offset_file is not None:
            bench.set_api_clock(None)
        rc = process.wait(60)
        if rc != 0:
            tail = (work / "agent.log").read_text(errors="replace")[-2500:]
            played.error = f"agent process exited {rc}: {tail}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()
    return None


def _local(t_ns: int, played: Played) -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(played.scenario.time_zone)
    return dt.datetime.fromtimestamp(t_ns / 1e9, zone).strftime("%a %d %b %H:%M")


def _journal(path: Path) -> dict[tuple[int, int], tuple[int, int]]:
    out: dict[tuple[int, int], tuple[int, int]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                out[(int(parts[0]), int(parts[1]))] = (int(parts[2]), int(parts[3]))
    return out


def _wait_stored(dsn: str, device: str, journal: Path, played: Played, timeout_s: float = 60.0) -> None:
    """Until every journalled record is stored (or nothing changes for a while)."""
    expected = _journal(journal)
    deadline = time.monotonic() + timeout_s
    last: dict[tuple[int, int], tuple[int, int]] | None = None
    still = 0
    while time.monotonic() < deadline:
        stored = stored_rows(dsn, device)
        if all(key in stored for key in expected):
            return
        still = still + 1 if stored == last else 0
        if still >= 20:
            return
        last = stored
        time.sleep(0.25)


def _wait_interrupt(bench: Bench, device: str, state: str, timeout_s: float = 20.0) -> dict[str, Any]:
    """The device's starter interrupt through the API, once it shows `state` (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown: dict[str, Any] = bench.device(device)["starter_interrupt"]
        if shown.get("state") == state or time.monotonic() > deadline:
            return shown
        time.sleep(0.25)


# -- judging -----------------------------------------------------------------------------------


def judge_interrupt(played: Played, expected: ExpectedInterrupt) -> list[Outcome]:
    """Through GET /devices/{id}: the interrupt's end state; the arm command issued at or after
    `armed_after` and acked as armed (not engaged: the car was driving); and the device's engaged
    report (its latest interrupt event: condition, time, evidence) no sooner than the hold time after
    `engaged_after` (the car parked), within `within_s`. The latency from parking is the outcome's."""
    out: list[Outcome] = []
    shown = played.interrupt
    out.append(Outcome(f"starter interrupt {expected.state} (GET /devices)",
                       shown.get("state") == expected.state,
                       f"shows {shown.get('state')}"))
    command = shown.get("last_command") or {}
    issued_ns = to_ns(command["created_at"]) if command.get("created_at") else None
    if expected.armed_after is not None:
        onset = played.marks.get(expected.armed_after)
        detail = str(command.get("ack_detail") or "no answer")
        ok = (onset is not None and issued_ns is not None and issued_ns >= onset - 10**9
              and command.get("action") == "arm_starter_interrupt" and command.get("state") == "done"
              and detail.startswith("armed"))
        out.append(Outcome(f"interrupt armed after {expected.armed_after}", ok,
                           f"{command.get('action')} {command.get('state')}: {detail}"))
    if expected.engaged_after is not None:
        parked = played.marks.get(expected.engaged_after)
        label = f"interrupt engaged after {expected.engaged_after}"
        if parked is None or shown.get("condition") != "engaged" or not shown.get("since"):
            out.append(Outcome(label, False, "mark never reached" if parked is None
                               else f"last change {shown.get('condition')!r}, not engaged"))
            return out
        engaged_ns = to_ns(shown["since"])
        latency = (engaged_ns - parked) / 1e9
        held = float((shown.get("evidence") or {}).get("parked_s", 0.0))
        problems = []
        if issued_ns is not None and engaged_ns < issued_ns:
            problems.append("engaged before it was armed")
        if latency < RELAY_HOLD_S or held < RELAY_HOLD_S:
            problems.append(f"engaged {latency:.1f} s after parking (parked_s {held:.1f}), "
                            f"sooner than the {RELAY_HOLD_S:.0f} s hold")
        if expected.within_s is not None and latency > expected.within_s:
            problems.append(f"{latency:.0f} s > {expected.within_s:.0f} s")
        summary = f"engaged {latency:.1f} s after parking (parked_s {held:.1f}, hold {RELAY_HOLD_S:.0f} s)"
        out.append(Outcome(label, not problems, "; ".join(problems) or summary, latency))
    return out


def judge(played: Played, journal: Path, dsn: str) -> None:
    scenario, out = played.scenario, played.outcomes
    matched: set[int] = set()
    for expected in scenario.events:
        onset = played.marks.get(expected.after) if expected.after else scenario.start_ns
        label = f"{expected.detector} {expected.severity}"
        label += f" after {expected.after}" if expected.after else ""
        if onset is None:
            out.append(Outcome(label, False, f"mark {expected.after!r} was never reached"))
            continue
        candidates = [(t, e) for e in played.events if e.detector == expected.detector
                      and (t := e.reached_ns(expected.severity)) is not None and t >= onset - 10**9]
        if not candidates:
            seen = [f"{e.detector} {e.severity}" for e in played.events if e.detector == expected.detector]
            out.append(Outcome(label, False, "not raised" + (f" (saw {', '.join(seen)})" if seen else "")))
            continue
        reached, event = min(candidates, key=lambda c: c[0])
        matched.add(event.event_id)
        latency = max(0.0, (reached - onset) / 1e9)
        problems = []
        if expected.within_s is not None and latency > expected.within_s:
            problems.append(f"{latency:.0f} s > {expected.within_s:.0f} s")
        if expected.cleared is not None and event.cleared != expected.cleared:
            problems.append("cleared" if event.cleared else "not cleared")
        detail = f"{event.severity}{' (cleared)' if event.cleared else ''}"
        out.append(Outcome(label, not problems, "; ".join(problems) or detail, latency))
    if scenario.interrupt is not None:
        out.extend(judge_interrupt(played, scenario.interrupt))
    if not scenario.other_alarms:
        expected_detectors = {e.detector for e in scenario.events} | scenario.allowed
        wrong = [e for e in played.events if SEVERITY_RANK[e.severity] >= SEVERITY_RANK["ALERT"]
                 and e.event_id not in matched and e.detector not in expected_detectors]
        named = ", ".join(f"{e.detector}/{e.condition or '-'} {e.severity}" for e in wrong)
        out.append(Outcome("nothing else at ALERT or above", not wrong, named or "none"))
    if scenario.exactly_once:
        expected_rows = _journal(journal)
        stored = stored_rows(dsn, played.device_id)
        lost = [k for k in expected_rows if k not in stored]
        different = [k for k in expected_rows if k in stored and stored[k] != expected_rows[k]]
        extra = [k for k in stored if k not in expected_rows]
        fixes = sum(v[0] for v in expected_rows.values())
        samples = sum(v[1] for v in expected_rows.values())
        ok = not lost and not different and len(extra) <= played.restarts
        out.append(Outcome("data exactly once", ok,
                           f"{len(expected_rows)} records ({fixes} fixes, {samples} samples): "
                           f"{len(lost)} lost, {len(different)} differ, {len(extra)} unjournalled"))
    energy = scenario.energy
    if energy:
        ledger = played.power.get("ledger", {})
        spent, soc, avg = ledger.get("spent_mah"), played.power.get("soc_pct"), ledger.get("average_ma")
        problems = []
        if "max_mah" in energy and (spent is None or spent > energy["max_mah"]):
            problems.append(f"spent {spent} mAh > {energy['max_mah']:.0f}")
        if "min_soc_pct" in energy and (soc is None or soc < energy["min_soc_pct"]):
            problems.append(f"SoC {soc} % < {energy['min_soc_pct']:.0f}")
        if "max_soc_pct" in energy and (soc is None or soc > energy["max_soc_pct"]):
            problems.append(f"SoC {soc} % > {energy['max_soc_pct']:.0f} (the agent did not see the drain)")
        if "max_avg_ma" in energy and (avg is None or avg > energy["max_avg_ma"]):
            problems.append(f"average {avg} mA > {energy['max_avg_ma']}")
        out.append(Outcome("energy", not problems,
                           "; ".join(problems) or f"{spent} mAh spent, average {avg} mA, SoC {soc} %"))


# -- the command -------------------------------------------------------------------------------


class _Say:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {text}", flush=True)


@contextlib.contextmanager
def _scratch(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="lienwatch-hil-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        if keep:
            print(f"scratch directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_scenarios(paths: Sequence[Path], output: Path, *, dsn: str | None = None, keep: bool = False,
                  say: Say | None = None, after: Callable[[Bench, list[Played]], None] | None = None,
                  device_ids: Sequence[str] | None = None, first_drive_s: float | None = None,
                  ) -> list[Played]:
    """Play `paths` (each checked first: a bad file stops the run before anything starts); the
    report goes to `output`; `after(bench, results)` runs while the services are still up."""
    scenarios = [load_scenario(p) for p in paths]
    say = say or _Say()
    devices = list(device_ids) if device_ids else [device_id_for(i, s) for i, s in enumerate(scenarios, 1)]
    output.mkdir(parents=True, exist_ok=True)
    results: list[Played] = []
    with _scratch(keep) as root, Bench(root, devices, say, dsn) as bench:
        for index, (scenario, device) in enumerate(zip(scenarios, devices, strict=True), 1):
            say(f"scenario {scenario.path.stem}: {scenario.name} (device {device})")
            played = play(bench, scenario, device, root / device, say, vin_for(index), first_drive_s)
            results.append(played)
            verdict = "PASS" if played.passed else "FAIL"
            say(f"  {verdict} in {played.wall_s:.1f} s for {played.sim_s / 3600:.1f} simulated hours")
        from hil.report import write_report

        write_report(results, output)
        if after is not None:
            after(bench, results)
    return results


def main(args: Any) -> int:
    """Handler of `lienwatch hil run`."""
    from hil.report import print_table

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the services on the way out
    paths = resolve(args.scenario)
    output = Path(args.output) if args.output else Path("hil-report")
    results = run_scenarios(paths, output, dsn=args.dsn, keep=args.keep)
    print_table(results)
    print(f"report: {output.resolve()} (junit.xml, report.json, one PNG per scenario)")
    return 0 if all(r.passed for r in results) else 1


def check(args: Any) -> int:
    """Handler of `lienwatch hil check`: parse every file; the first error is raised (exit 2)."""
    for path in resolve(args.scenario):
        scenario = load_scenario(path)
        print(f"{path.stem}: ok ({len(scenario.steps)} steps, {len(scenario.events)} expected events)")
    return 0
