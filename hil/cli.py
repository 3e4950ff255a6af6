"""`lienwatch hil`: run scripted vehicle scenarios against the real agent and database."""

from __future__ import annotations

import argparse

from lienwatch.cli import add_group, not_yet


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hil = add_group(commands, "hil", "Hardware-in-the-loop scenarios.")
    run = hil.add_parser("run", help="Run a scenario (towing, unplugging, jamming, 90-day park).")
    run.add_argument("scenario", help="scenario name or file")
    run.set_defaults(handler=not_yet("issue: HIL scenario runner"))
