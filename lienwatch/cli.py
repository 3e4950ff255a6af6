"""The `lienwatch` command: one entry point, subcommands contributed by each stage.

Each stage owns a small `cli` module with `register(subparsers)`; those modules import only
argparse-level things at import time and load their heavy dependencies inside the handler, so
`lienwatch --help` works on a gateway that installed only the `[edge]` extra.
A handler returns the process exit code. Any `LienwatchError` becomes one line on stderr and exit
code 2 — never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from lienwatch import __version__
from lienwatch.errors import LienwatchError

Handler = Callable[[argparse.Namespace], int]

# Stage CLI modules, in the order their commands appear in --help.
STAGE_CLI_MODULES = ("edge.cli", "protocol.cli", "cloud.cli", "hil.cli", "hil.demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lienwatch",
        description="Telematics for vehicles that serve as loan collateral.",
    )
    parser.add_argument("--version", action="version", version=f"lienwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in STAGE_CLI_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:  # a command group given without its subcommand
        parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "--help"])
        return 2
    try:
        return handler(args)
    except LienwatchError as error:
        print(f"lienwatch: {type(error).__name__}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def add_group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add a command group (`lienwatch edge ...`) and return its subcommand registry."""
    group = commands.add_parser(name, help=help_text, description=help_text)
    return group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", required=True)


def lazy(target: str) -> Handler:
    """A handler named `"package.module:function"`, imported only when the command runs."""

    def handler(args: argparse.Namespace) -> int:
        module_name, _, function_name = target.partition(":")
        function: Handler = getattr(importlib.import_module(module_name), function_name)
        return function(args)

    return handler


def not_yet(issue: str) -> Handler:
    """A handler for a subcommand whose stage has not landed: says so plainly, exit code 2."""

    def handler(args: argparse.Namespace) -> int:
        print(f"lienwatch: this command is not available yet ({issue}).", file=sys.stderr)
        return 2

    return handler


if __name__ == "__main__":
    sys.exit(main())
