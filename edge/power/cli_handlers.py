"""`lienwatch edge power plan`: the plan for every state, its forecast and why."""

from __future__ import annotations

import argparse
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from edge.power.battery import LeadAcidBattery
from edge.power.planner import Plan, Planner, PlanSet, Policy, PowerMode
from edge.power.profile import load_profile
from lienwatch.errors import ConfigError
from lienwatch.tomlfile import parse_toml


def _policy(args: argparse.Namespace) -> Policy:
    table: dict[str, Any] = {}
    if args.policy:
        try:
            data = parse_toml(Path(args.policy).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read the policy file {args.policy}: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{args.policy} is not valid TOML: {error}") from None
        power = data.get("power", data)
        if not isinstance(power, dict):
            raise ConfigError(f"{args.policy}: [power] must be a table")
        table.update(power)
    table["horizon_days"] = args.days
    if args.vehicle_quiescent_ma is not None:
        table["vehicle_quiescent_ma"] = args.vehicle_quiescent_ma
    return Policy.from_mapping(table)


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def render(plans: PlanSet, profile_name: str) -> str:
    lines = [f"power plan for {profile_name}", ""]
    lines += [f"  {r}" for r in plans.reasons]
    lines.append("")
    header = f"{'state':<13} {'soc':<8} {'modem':<10} {'gnss':<13} {'wake':>7} {'position':>9} " \
             f"{'heartbeat':>9} {'avg mA':>9} {'tow s':>6}"
    lines += [header, "-" * len(header)]
    for mode, plan in plans.plans.items():
        lines.append(f"{mode.value:<13} {plan.soc:<8} {plan.modem:<10} "
                     f"{plan.gnss + '/' + plan.gnss_standby:<13} {_hours(plan.wake_interval_s):>7} "
                     f"{_hours(plan.position_interval_s):>9} {_hours(plan.heartbeat_interval_s):>9} "
                     f"{plan.avg_current_ma:>9.3f} {plan.tow_latency_s:>6.0f}")
    backup = plans.plans.get(PowerMode.BACKUP)
    if backup is not None and backup.endurance_h is not None:
        lines.append(f"(backup: avg mA at the cell, which lasts {backup.endurance_h:.0f} h; "
                     "the others at the vehicle's 12 V)")
    for mode, plan in plans.plans.items():
        lines += ["", f"why {mode.value}:"]
        lines += [f"  - {r}" for r in plan.reasons]
    return "\n".join(lines)


def _json_plan(plan: Plan) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in plan.as_dict().items()}


def plan(args: argparse.Namespace) -> int:
    """Print the plan of every state for a profile, a battery and a horizon."""
    if not (isinstance(args.days, float) and math.isfinite(args.days) and 0 < args.days <= 3650):
        raise ConfigError(f"--days must be > 0 and <= 3650, got {args.days}")
    profile = load_profile(args.profile)
    battery = LeadAcidBattery(capacity_ah=args.capacity_ah, soc_pct=args.soc_pct,
                              crank_soc_pct=args.crank_soc_pct, temperature_c=args.temperature_c)
    planner = Planner(profile, _policy(args), battery)
    plans = planner.current
    if args.json:
        print(json.dumps({
            "profile": profile.name, "soc_pct": plans.soc_pct, "budget_ma": plans.budget_ma,
            "forecast_days": None if math.isinf(plans.forecast_days) else plans.forecast_days,
            "soc_at_horizon_pct": plans.soc_at_horizon_pct,
            "reasons": list(plans.reasons),
            "plans": {m.value: _json_plan(p) for m, p in plans.plans.items()}}, indent=2))
    else:
        print(render(plans, profile.name))
    return 0
