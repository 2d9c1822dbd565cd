"""`mig-exporter report`: flags, the run, the output file."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from exporter.contract.thresholds import IDLE_RATIO
from exporter.report.collect import Collector
from exporter.report.prometheus import (
    Credentials,
    PrometheusClient,
    PrometheusError,
    check_url,
    one_line,
    selector_matchers,
)
from exporter.report.render_html import render_html
from exporter.report.render_json import render_json
from exporter.report.render_markdown import render_markdown
from exporter.report.review import Review, ReviewBuilder
from exporter.report.rightsize import Policy
from exporter.report.stats import Grid
from exporter.timespec import parse_duration, parse_time

RENDERERS: dict[str, Callable[[Review], str]] = {"md": render_markdown, "html": render_html, "json": render_json}
_SUFFIXES = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json"}


P = TypeVar("P", bound=argparse.ArgumentParser)


class ReportInputError(ValueError):
    """A bad flag or file; the message names it."""


@dataclass(frozen=True, slots=True)
class ReportOptions:
    url: str
    grid: Grid
    policy: Policy
    output: str
    out: Path | None
    matchers: str
    node_label: str
    credentials: Credentials
    timeout: float


def add_parser(commands: argparse._SubParsersAction[P]) -> None:
    """Add the `report` subcommand to the CLI's subparsers."""
    p = commands.add_parser("report", help="capacity review: right-size MIG layouts from Prometheus history")
    p.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus, Thanos or Mimir URL with any prefix")
    p.add_argument("--window", default="7d", help="how far back to look, e.g. 30d (default 7d)")
    p.add_argument("--step", default="5m", help="resolution: activity is averaged per step (default 5m)")
    p.add_argument("--end", default="now", metavar="TIME", help="end of the window: now, unix seconds or ISO 8601")
    p.add_argument(
        "--output", default=None, metavar="{md,html,json}", help="format (default: --out's extension, else md)"
    )
    p.add_argument("--out", default=None, metavar="FILE", help="write here instead of standard output")
    p.add_argument("--match", default="", metavar="MATCHERS", help='label matchers selecting nodes: instance=~"gpu-.*"')
    p.add_argument("--node-label", default="instance", help="the label that names a node (default instance)")
    p.add_argument(
        "--idle-threshold", default=str(IDLE_RATIO), metavar="RATIO", help=f"activity below this is idle ({IDLE_RATIO})"
    )
    p.add_argument("--headroom", default="0.2", metavar="RATIO", help="compute headroom over p95 demand (0.2)")
    p.add_argument("--memory-headroom", default="0.1", metavar="RATIO", help="headroom over peak memory (0.1)")
    p.add_argument("--bearer-token-file", default=None, metavar="FILE", help="send the token in this file")
    p.add_argument("--basic-auth-user", default=None, metavar="USER", help="basic auth user")
    p.add_argument("--basic-auth-password-file", default=None, metavar="FILE", help="basic auth password file")
    p.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE", help="extra header, e.g. X-Scope-OrgID:team"
    )
    p.add_argument("--timeout", default="120", metavar="SECONDS", help="per request, body included (default 120)")


def _ratio(flag: str, value: str, hi: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ReportInputError(f"{flag}: invalid value {value!r}: expected a number") from None
    if not 0 <= number <= hi or math.isnan(number):
        raise ReportInputError(f"{flag}: invalid value {value!r}: must be between 0 and {hi:g}")
    return number


def _read_secret(flag: str, path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ReportInputError(f"{flag} {path}: cannot read: {exc.strerror}") from None


def _credentials(args: argparse.Namespace) -> Credentials:
    token = _read_secret("--bearer-token-file", args.bearer_token_file) if args.bearer_token_file else None
    basic = None
    if (args.basic_auth_user is None) != (args.basic_auth_password_file is None):
        raise ReportInputError("--basic-auth-user and --basic-auth-password-file go together")
    if args.basic_auth_user is not None:
        if ":" in args.basic_auth_user:
            raise ReportInputError(f"--basic-auth-user: invalid value {args.basic_auth_user!r}: a user name has no ':'")
        basic = (args.basic_auth_user, _read_secret("--basic-auth-password-file", args.basic_auth_password_file))
    if token and basic:
        raise ReportInputError("--bearer-token-file and --basic-auth-user exclude each other")
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ReportInputError(f"--header: invalid value {header!r}: expected NAME:VALUE")
        headers[name.strip()] = value.strip()
    return Credentials(token, basic, headers)


def _format_of(out: str | None) -> str:
    """The format --out's extension names (Markdown where it has none); an unknown extension is an error."""
    suffix = Path(out or "").suffix
    if not suffix:
        return "md"
    if suffix.lower() not in _SUFFIXES:
        raise ReportInputError(
            f"--out {out}: unknown extension {suffix!r}: use {', '.join(_SUFFIXES)}, "
            f"or name the format with --output {{{','.join(RENDERERS)}}}"
        )
    return _SUFFIXES[suffix.lower()]


def options_from(args: argparse.Namespace, now: float) -> ReportOptions:
    """Check every flag; raise ReportInputError naming the first bad one."""
    try:
        url = check_url(args.prometheus)
    except ValueError as exc:
        raise ReportInputError(f"--prometheus: {exc}") from None
    durations = {}
    for flag, value in (("--window", args.window), ("--step", args.step)):
        try:
            durations[flag] = parse_duration(value)
        except ValueError as exc:
            raise ReportInputError(f"{flag}: {exc}") from None
    window, step = durations["--window"], durations["--step"]
    if step < 1:
        raise ReportInputError(f"--step: {args.step!r} is shorter than one second")
    if step > window:
        raise ReportInputError(f"--step {args.step} is longer than --window {args.window}")
    try:
        end = parse_time(args.end, now)
    except ValueError as exc:
        raise ReportInputError(f"--end: {exc}") from None
    end = math.floor(end / step) * step
    grid = Grid(end - math.floor(window / step + 1e-9) * step, end, step)
    output = args.output or _format_of(args.out)
    if output not in RENDERERS:
        raise ReportInputError(f"--output: invalid value {output!r}: expected one of {', '.join(RENDERERS)}")
    try:
        matchers = selector_matchers(args.match) if args.match else ""
    except ValueError as exc:
        raise ReportInputError(f"--match: {exc}") from None
    policy = Policy(
        idle_threshold=_ratio("--idle-threshold", args.idle_threshold, 1),
        compute_headroom=_ratio("--headroom", args.headroom, 10),
        memory_headroom=_ratio("--memory-headroom", args.memory_headroom, 10),
    )
    timeout = _ratio("--timeout", args.timeout, 3600)
    if timeout <= 0:
        raise ReportInputError(f"--timeout: invalid value {args.timeout!r}: must be more than 0")
    return ReportOptions(
        url=url,
        grid=grid,
        policy=policy,
        output=output,
        out=Path(args.out) if args.out else None,
        matchers=matchers,
        node_label=args.node_label,
        credentials=_credentials(args),
        timeout=timeout,
    )


class ProgressBar:
    """A one-line progress bar on a terminal; silent when the stream is not a TTY."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.enabled = stream.isatty()
        self.open = False  # a partial line is on the terminal

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        filled = self.width * done // total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\rquerying Prometheus [{bar}] {done}/{total} nodes")
        self.open = done < total
        if not self.open:
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        """End a partial line (after an error) so the next message starts on its own line."""
        if self.open:
            self.stream.write("\n")
            self.open = False


async def review(options: ReportOptions, progress: ProgressBar | None = None) -> Review:
    """Query the server and build the review, shard by shard."""
    heat = options.output == "html"  # only the HTML page draws the heatmap
    builder = ReviewBuilder(options.grid, options.policy, heat=heat)
    async with PrometheusClient(options.url, options.credentials, timeout=options.timeout) as client:
        collector = Collector(
            client,
            options.grid,
            options.policy,
            node_label=options.node_label,
            matchers=options.matchers,
            heat=heat,
            progress=progress,
        )
        provenance = await collector.collect(builder.add)
    return builder.finish(options.url, provenance)


def run(args: argparse.Namespace) -> int:
    """The `report` subcommand; returns the exit code (2 for bad input or an unusable server)."""
    progress = ProgressBar(sys.stderr)
    try:
        options = options_from(args, time.time())
        result = asyncio.run(review(options, progress))
    except (ReportInputError, PrometheusError) as exc:
        progress.close()
        print(f"mig-exporter: error: {one_line(str(exc), 2000)}", file=sys.stderr)
        return 2
    text = RENDERERS[options.output](result)
    if options.out is None:
        sys.stdout.write(text)
        return 0
    try:
        options.out.write_text(text)
    except OSError as exc:
        print(f"mig-exporter: error: --out {options.out}: cannot write: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
