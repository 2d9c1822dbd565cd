"""The `mig-exporter` command line: one parser, a subcommand per module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from exporter import __version__
from exporter.cli import history, plan, report, serve
from exporter.cli.settings import ConfigError, resolve
from exporter.http.webconfig import WebConfigError
from exporter.sources.base import SourceUnavailableError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised, printed by main) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mig-exporter", description="Per-slice activity and memory of MIG GPUs for Prometheus.")
    parser.add_argument("--version", action="version", version=f"mig-exporter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve.add_parser(commands)
    plan.add_parser(commands)
    report.add_parser(commands)
    history.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            return serve.run(resolve(vars(args)))
        if args.command == "plan":
            return plan.run(args)
        if args.command == "report":
            return report.run(args)
        if args.command == "simulate-history":
            return history.run(args)
    except (ConfigError, SourceUnavailableError, WebConfigError) as exc:
        print(f"mig-exporter: error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
