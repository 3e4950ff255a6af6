"""`lienwatch hil`: play scenario files against the real agent, broker, receiver and database."""

from __future__ import annotations

import argparse

from lienwatch.cli import add_group, lazy


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hil = add_group(commands, "hil", "Hardware-in-the-loop scenarios.")
    run = hil.add_parser("run", help="Play scenarios (hil/scenarios/*.toml, a file, or 'all') end to end.",
                         description="Play scenarios end to end and check what the lender sees.")
    run.add_argument("scenario", nargs="+", help="scenario name (e.g. night_tow), file, or 'all'")
    run.add_argument("--output", help="report folder (PNG per scenario, report.json, junit.xml); "
                                      "default ./hil-report")
    run.add_argument("--dsn", help="use this PostgreSQL instead of an embedded one (it gets the schema)")
    run.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, agent state)")
    run.set_defaults(handler=lazy("hil.runner:main"))
    check = hil.add_parser("check", help="Check scenario files without playing them.")
    check.add_argument("scenario", nargs="+", help="scenario name, file, or 'all'")
    check.set_defaults(handler=lazy("hil.runner:check"))
