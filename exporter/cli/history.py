"""`mig-exporter simulate-history`: a synthetic scenario's past as OpenMetrics, for promtool backfilling."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import TextIO, TypeVar

from exporter.contract import defaults
from exporter.sources.synthetic.history import Node, sample_times, write_openmetrics
from exporter.sources.synthetic.scenario import ScenarioError, load
from exporter.sources.synthetic.simulator import Simulator
from exporter.timespec import parse_duration, parse_time

P = TypeVar("P", bound=argparse.ArgumentParser)


class HistoryInputError(ValueError):
    """A bad flag; the message names it."""


def add_parser(commands: argparse._SubParsersAction[P]) -> None:
    """Add the `simulate-history` subcommand to the CLI's subparsers."""
    p = commands.add_parser(
        "simulate-history",
        help="write a synthetic scenario's history as OpenMetrics (promtool tsdb create-blocks-from openmetrics)",
    )
    p.add_argument(
        "--scenario", action="append", default=None, metavar="NAME|FILE", help="a node to simulate (repeatable)"
    )
    p.add_argument(
        "--instance",
        action="append",
        default=[],
        metavar="LABEL",
        help=f"its instance label (default NAME:{defaults.EXPORTER_PORT})",
    )
    p.add_argument("--window", default="14d", help="how much history (default 14d)")
    p.add_argument("--step", default="5m", help="scrape interval of the history (default 5m)")
    p.add_argument("--end", default="now", metavar="TIME", help="last sample: now, unix seconds or ISO 8601")
    p.add_argument("--out", default="-", metavar="FILE", help="file to write (default standard output)")


def _nodes(args: argparse.Namespace) -> list[Node]:
    scenarios = args.scenario or ["dgx-h100"]
    if len(args.instance) > len(scenarios):
        raise HistoryInputError(f"--instance: {len(args.instance)} labels for {len(scenarios)} --scenario")
    nodes = []
    used: set[str] = set()
    for i, name in enumerate(scenarios):
        try:
            scenario = load(name)
        except ScenarioError as exc:
            raise HistoryInputError(f"--scenario: {exc}") from None
        label = args.instance[i] if i < len(args.instance) else f"{scenario.name}:{defaults.EXPORTER_PORT}"
        base, n = label, 2
        while label in used:
            label, n = f"{base}-{n}", n + 1
        used.add(label)
        nodes.append(Node(label, Simulator(scenario)))
    return nodes


def _flag(flag: str, parse: Callable[[str], float], value: str) -> float:
    try:
        return parse(value)
    except ValueError as exc:
        raise HistoryInputError(f"{flag}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Write the history; exit 2 with one line on bad input."""
    try:
        nodes = _nodes(args)
        window = _flag("--window", parse_duration, args.window)
        step = _flag("--step", parse_duration, args.step)
        end = _flag("--end", lambda v: parse_time(v, time.time()), args.end)
        if step > window:
            raise HistoryInputError(f"--step {args.step} is longer than --window {args.window}")
    except HistoryInputError as exc:
        print(f"mig-exporter: error: {exc}", file=sys.stderr)
        return 2
    end = math.floor(end / step) * step
    times = sample_times(end - math.floor(window / step) * step, end, step)
    try:
        target: TextIO
        with nullcontext(sys.stdout) if args.out == "-" else open(args.out, "w") as target:
            count = write_openmetrics(nodes, times, target)
    except OSError as exc:
        print(f"mig-exporter: error: --out {args.out}: cannot write: {exc.strerror}", file=sys.stderr)
        return 2
    if args.out != "-":
        print(f"wrote {count} samples of {len(nodes)} node(s) to {args.out}", file=sys.stderr)
    return 0
