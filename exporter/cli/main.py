"""The `mig-exporter` command line: one parser, a subcommand per module of this package.

A subcommand's module is imported only when that subcommand runs (or for the full --help), so the
long-running `serve` keeps none of the report's, planner's or history's code resident.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from exporter import __version__
from exporter.cli.settings import ConfigError, resolve
from exporter.http.webconfig import WebConfigError
from exporter.sources.base import SourceUnavailableError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised, printed by main) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes some arguments (invalid choices) but not others (unrecognized ones): escape what it
        # did not, so an argument with a newline or a control character still makes one line.
        raise ConfigError("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


# Subcommand -> the module that defines its parser (`add_parser`) and runs it (`run`).
SUBCOMMANDS = {
    "serve": "exporter.cli.serve",
    "plan": "exporter.cli.plan",
    "report": "exporter.cli.report",
    "simulate-history": "exporter.cli.history",
    "doctor": "exporter.cli.doctor",
    "healthcheck": "exporter.cli.healthcheck",
}


def _module(command: str) -> ModuleType:
    return importlib.import_module(SUBCOMMANDS[command])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with `only` that one."""
    parser = _Parser(prog="mig-exporter", description="Per-slice activity and memory of MIG GPUs for Prometheus.")
    parser.add_argument("--version", action="version", version=f"mig-exporter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in SUBCOMMANDS:
        if only is None or command == only:
            _module(command).add_parser(commands)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, when it is a known one."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(_command(argv)).parse_args(argv)
        if args.command == "serve":
            return int(_module("serve").run(resolve(vars(args))))
        return int(_module(args.command).run(args))
    except (ConfigError, SourceUnavailableError, WebConfigError) as exc:
        print(f"mig-exporter: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
