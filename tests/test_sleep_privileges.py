"""The files that let the unprivileged agent suspend the board (deploy/polkit, deploy/systemd).

The polkit rule is JavaScript: it is evaluated in Node.js (polkitd runs it in its own engine; the
rule is plain ES5) against the requests systemd would make, allowed and not. The sleep units are
checked by `systemd-analyze verify` as instances with a number of seconds. With CI=true a missing
tool fails; elsewhere it skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RULE = REPO / "deploy/polkit/50-lienwatch-sleep.rules"
UNITS = ("lienwatch-suspend@.service", "lienwatch-off@.service")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# What polkitd hands a rule, reduced to what this one reads; results as polkit.Result strings.
_HARNESS = """
const fs = require("fs");
const rules = [];
const polkit = {Result: {YES: "yes", NO: "no", NOT_HANDLED: null}, addRule: (f) => rules.push(f)};
new Function("polkit", fs.readFileSync(process.argv[1], "utf8"))(polkit);
const out = JSON.parse(process.argv[2]).map(([id, user, details]) => {
  const action = {id: id, lookup: (k) => details[k]};
  for (const rule of rules) { const r = rule(action, {user: user}); if (r !== null) return r; }
  return null;
});
console.log(JSON.stringify({rules: rules.length, results: out}));
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is needed to check the shipped sleep privileges")
        pytest.skip(f"no {name} here")
    return path


MANAGE = "org.freedesktop.systemd1.manage-units"
CASES: list[tuple[str, str, dict[str, str], str | None]] = [
    (MANAGE, "lienwatch", {"unit": "lienwatch-suspend@3600.service", "verb": "start"}, "yes"),
    (MANAGE, "lienwatch", {"unit": "lienwatch-off@60.service", "verb": "start"}, "yes"),
    (MANAGE, "lienwatch", {"unit": "lienwatch-suspend@3600.service", "verb": "stop"}, None),
    (MANAGE, "lienwatch", {"unit": "lienwatch-suspend@-1.service", "verb": "start"}, None),
    (MANAGE, "lienwatch", {"unit": "lienwatch-suspend@0.service", "verb": "start"}, None),
    (MANAGE, "lienwatch", {"unit": "lienwatch-suspend@36;reboot.service", "verb": "start"}, None),
    (MANAGE, "lienwatch", {"unit": "ssh.service", "verb": "start"}, None),
    (MANAGE, "lienwatch", {"unit": "lienwatch-agent.service", "verb": "restart"}, None),
    (MANAGE, "mallory", {"unit": "lienwatch-suspend@3600.service", "verb": "start"}, None),
    ("org.freedesktop.login1.reboot", "lienwatch", {}, None),
]


def test_the_polkit_rule_lets_the_agent_start_only_its_sleep_units() -> None:
    node = _tool("node")
    request = json.dumps([[a, u, d] for a, u, d, _ in CASES])
    done = subprocess.run([node, "-e", _HARNESS, str(RULE), request], capture_output=True, text=True,
                          timeout=30, check=True)
    answer = json.loads(done.stdout)
    assert answer["rules"] == 1
    assert answer["results"] == [want for *_, want in CASES]


@pytest.mark.parametrize("unit", UNITS)
def test_the_sleep_units_verify_as_instances(tmp_path: Path, unit: str) -> None:
    tool = _tool("systemd-analyze")
    instance = tmp_path / unit.replace("@.", "@3600.")
    instance.write_text((REPO / "deploy/systemd" / unit).read_text())
    done = subprocess.run([tool, "verify", str(instance)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    broken = tmp_path / unit.replace("@.", "@60.")  # the check can fail: a typo is reported
    broken.write_text(instance.read_text().replace("Type=oneshot", "Type=oneshoot"))
    bad = subprocess.run([tool, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "oneshoot" in bad.stderr


def test_the_documented_command_names_the_shipped_units() -> None:
    doc = (REPO / "docs/power.md").read_text()
    command = 'command = "systemctl start lienwatch-{soc}@{seconds}.service"'
    assert command in doc
    for soc in ("suspend", "off"):  # the planner's `soc` values, each a shipped unit
        assert (REPO / f"deploy/systemd/lienwatch-{soc}@.service").is_file()
