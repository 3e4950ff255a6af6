"""`Policy`: the lifecycle options every detector has (debounce, hysteresis, cooldown, cap)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.options import Option
from lienwatch.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Policy:
    """Debounce, hysteresis, cooldown and cap of one detector (options every detector has)."""

    debounce_s: float = 0.0
    clear_s: float = 30.0
    cooldown_s: float = 300.0
    max_events_per_hour: int = 6
    latched: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any], section: str = "detectors") -> Policy:
        policy = cls(**{k: options[k] for k in POLICY_KEYS if k in options})
        for name in ("debounce_s", "clear_s", "cooldown_s"):
            value = getattr(policy, name)
            if not 0.0 <= value <= 30 * 86400.0:
                raise ConfigError(f"{section}.{name} must be in 0..2592000 seconds, got {value!r}")
        if not 1 <= policy.max_events_per_hour <= 3600:
            raise ConfigError(f"{section}.max_events_per_hour must be in 1..3600, "
                              f"got {policy.max_events_per_hour!r}")
        return policy


POLICY_KEYS = ("debounce_s", "clear_s", "cooldown_s", "max_events_per_hour", "latched")


def policy_options(defaults: Policy = Policy()) -> tuple[Option, ...]:
    """The lifecycle options of a detector's schema, with that detector's defaults."""
    return (
        Option("debounce_s", float, defaults.debounce_s,
               "a condition must hold this long before it is raised"),
        Option("clear_s", float, defaults.clear_s,
               "an open event clears after the condition is gone this long"),
        Option("cooldown_s", float, defaults.cooldown_s,
               "after a clear, the condition is not raised again for this long"),
        Option("max_events_per_hour", int, defaults.max_events_per_hour,
               "raised + escalated events per hour at most (EMERGENCY always goes)"),
        Option("latched", bool, defaults.latched, "open events clear only by command, never by themselves"),
    )
