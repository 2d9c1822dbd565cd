"""The `mig-exporter` command line: one parser, a subcommand per module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from exporter import __version__
from exporter.cli import doctor, healthcheck, history, plan, report, serve
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
    doctor.add_parser(commands)
    healthcheck.add_parser(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    return serve.run(resolve(vars(args)))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve,
    "plan": plan.run,
    "report": report.run,
    "simulate-history": history.run,
    "doctor": doctor.run,
    "healthcheck": healthcheck.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (ConfigError, SourceUnavailableError, WebConfigError) as exc:
        print(f"mig-exporter: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
