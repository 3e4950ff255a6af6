"""Reconnect delays: exponential backoff with full jitter, shared by the agent and the receiver."""

from __future__ import annotations

import random


def backoff_s(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before reconnect attempt `attempt` (1, 2, …): uniform in [min, min(max, min·2^(a-1))].

    Full jitter, so clients that lost the same broker at the same moment do not return in lock step.
    """
    ceiling = min(max_s, min_s * (2 ** min(max(attempt - 1, 0), 30)))
    return rng.uniform(min_s, max(ceiling, min_s))
