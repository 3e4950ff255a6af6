"""The bench's API process: the real `cloud.api` app on a clock that follows the simulation.

    python -m hil.bench_api API.toml OFFSET_FILE

As `lienwatch cloud api --config API.toml`, except for the clock: wall time is real time plus the
offset (integer nanoseconds) the runner writes to OFFSET_FILE before it sends a command (absent:
no offset). A command is signed with its issue and expiry times, and the agent checks them against
its own clock, which runs in simulated time (a scenario from January, played in December); so the
API signs in simulated time too. Monotonic time (rate limits) stays real.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


class FollowingClock:
    """Real clocks, wall time shifted by the offset in a file (re-read when the file changes)."""

    def __init__(self, offset_file: Path) -> None:
        self.offset_file = offset_file
        self._stamp: tuple[int, int] | None = None
        self._offset_ns = 0

    def offset_ns(self) -> int:
        try:
            info = self.offset_file.stat()
            stamp = (info.st_ino, info.st_mtime_ns)  # the runner replaces the file: a new inode
        except FileNotFoundError:
            return 0
        if stamp != self._stamp:
            text = self.offset_file.read_text().strip()
            self._offset_ns, self._stamp = (int(text), stamp) if text else (self._offset_ns, self._stamp)
        return self._offset_ns

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        return time.time_ns() + self.offset_ns()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m hil.bench_api API.toml OFFSET_FILE", file=sys.stderr)
        return 2
    import logging

    from cloud.api.app import create_app
    from cloud.api.cli import serve
    from cloud.api.config import load_config

    config = load_config(argv[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config, clock=FollowingClock(Path(argv[1])))
    serve(app, config.api)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
