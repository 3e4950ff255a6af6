"""The receiver's systemd unit is hardened at least like the agent's (deploy/receiver/)."""

from __future__ import annotations

import shutil
import subprocess

from hil.services import REPO_ROOT
from tests.edge_agent.test_deploy import UNIT as AGENT_UNIT
from tests.edge_agent.test_deploy import _directives

UNIT = REPO_ROOT / "deploy/receiver/lienwatch-receiver@.service"
# What the agent needs for a car and the receiver must not have or chooses differently.
AGENT_ONLY = {"Type", "NotifyAccess", "ExecStart", "WatchdogSec", "TimeoutStartSec", "TimeoutStopSec",
              "KillMode", "Environment", "SupplementaryGroups", "StateDirectory", "StateDirectoryMode",
              "RuntimeDirectory", "RuntimeDirectoryMode", "DeviceAllow", "CPUQuota", "MemoryMax",
              "LimitNOFILE", "RestartSec", "RestrictAddressFamilies", "Description", "Documentation",
              "Wants", "After", "StartLimitIntervalSec", "WantedBy"}


def test_receiver_unit_has_every_hardening_setting_of_the_agent_unit() -> None:
    agent, receiver = _directives(AGENT_UNIT), _directives(UNIT)
    for name, values in agent.items():
        if name == "SystemCallFilter":  # the receiver may filter more, never less
            assert set(values) <= set(receiver.get(name, []))
        elif name not in AGENT_ONLY:
            assert receiver.get(name) == values, f"{name}: agent {values}, receiver {receiver.get(name)}"
    assert receiver["CapabilityBoundingSet"] == [""] and receiver["UMask"] == ["0077"]
    assert receiver["PrivateDevices"] == ["true"] and receiver["MemoryMax"]
    families = set(receiver["RestrictAddressFamilies"][0].split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}  # no CAN, netlink or raw packets
    assert "~@privileged @resources" in receiver["SystemCallFilter"]


def test_systemd_accepts_the_receiver_unit() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # not every CI image has systemd; the directive test above still runs
        return
    result = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "lienwatch-receiver" in line
                and any(word in line for word in ("Unknown", "unknown", "Invalid", "invalid",
                                                   "Failed to parse", "not a valid"))]
    assert problems == []
