"""The fleet dashboard's queries at fleet size: per panel query time and samples read, at 16 and 32 nodes.

For each fleet size, dgx-h100 nodes get `--days` of history at a 5m step (half of them with pod attribution)
and the rules' results over it (tests/support/fleet.py: simulate-history, promtool's openmetrics and rules
backfills). Then every query of the fleet dashboard runs as Grafana sends it over the whole history (instant
queries at its end, graphs at about 1,000 points), and, in the same run, the baseline: the raw-range queries
the fleet dashboard ran before the rollups. Each query runs once to warm up, then `--repeat` times; the table
gives the median of Prometheus' own evaluation time and, from its query statistics (`stats=all`),
`totalQueryableSamples` (samples read) and `peakSamples` (the figure `--query.max-samples`, default 50 M,
limits). The last column scales samples read to 1,000 nodes x 30 days: a line through the sizes measured, linear
in days (raw ones also to a 15 s scrape: the history holds one sample per 5 minutes).

    PYTHONPATH=. python bench/dashboards_fleet.py [--sizes 16 32] [--days 14] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.contract import families as fam
from exporter.model import Field
from tests.support.fleet import RETENTION, build, node_names
from tests.support.processes import PrometheusServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ACTIVITY = fam.INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE].series
KEY = "instance, gpu, gi, profile"
RAW_STEP_S, SCRAPE_S = 300, 15
TOP = 20  # the dashboard's default $top
# The fleet dashboard's queries before the rollups (range means over raw series, a row per instance).
BASELINE = {
    "Idle instances": (f"count(avg_over_time({ACTIVITY}[$__range]) < 0.05) or vector(0)", True),
    "Idle capacity": (
        f"(sum({fam.INSTANCE_COMPUTE_SLICES} and on ({KEY}) (avg_over_time({ACTIVITY}[$__range]) < 0.05)) / 7)"
        " or vector(0)",
        True,
    ),
    "Under-used instances": (f"count(avg_over_time({ACTIVITY}[$__range]) < 0.2 >= 0.05) or vector(0)", True),
    "Idle and under-used instances": (f"avg_over_time({ACTIVITY}[$__range]) < 0.2", True),
    "Activity of every GPU instance": (ACTIVITY, False),
    "Activity by profile": (f"avg by (profile) ({ACTIVITY})", False),
}


@dataclass
class Row:
    nodes: int
    days: int
    panel: str
    kind: str  # "rollups" or "raw (baseline)"
    series: int
    samples: int
    peak: int
    eval_ms: float

    scaled: float = 0.0  # samples read at 1,000 nodes x 30 days (see extrapolate)

    def at_scale(self) -> float:
        return self.scaled


def extrapolate(rows: list[Row]) -> None:
    """Samples read at 1,000 nodes x 30 days: a line through the sizes measured (a query over per-profile series
    reads as much at any fleet size), linear in days; raw queries also at a 15 s scrape."""
    for row in rows:
        same = sorted((r.nodes, r.samples) for r in rows if r.panel == row.panel and r.kind == row.kind)
        if len(same) >= 2:
            (n1, s1), (n2, s2) = same[0], same[-1]
            slope = (s2 - s1) / (n2 - n1)
            at_1000 = s1 + slope * (1000 - n1)
        else:
            at_1000 = row.samples * 1000 / row.nodes
        raw = RAW_STEP_S / SCRAPE_S if row.kind != "rollups" else 1
        row.scaled = at_1000 * 30 / row.days * raw


def fleet_queries() -> list[tuple[str, str, bool]]:
    dash = json.loads((ROOT / "dashboards" / "mig-fleet.json").read_text())
    out = []
    for panel in dash["panels"]:
        for t in panel["targets"]:
            name = panel["title"] if len(panel["targets"]) == 1 else f"{panel['title']} / {t['refId']}"
            out.append((name, t["expr"], bool(t["instant"])))
    return out


def measure(
    prom: PrometheusServer, query: tuple[str, bool], end: int, range_s: int, repeat: int
) -> tuple[int, int, int, float]:
    """(series, samples read, peak samples, median evaluation ms) of one query (expression, instant or not)."""
    expr, instant = query
    expr = re.sub(r"\$(\w+)", lambda m: {"__range": f"{range_s}s", "profile": ".*", "top": str(TOP)}[m.group(1)], expr)
    if instant:
        params = {"query": expr, "time": str(end), "stats": "all"}
        path = "query"
    else:
        step = max(RAW_STEP_S, range_s // 1000)
        params = {"query": expr, "start": str(end - range_s), "end": str(end), "step": str(step), "stats": "all"}
        path = "query_range"
    runs: list[dict[str, Any]] = [prom.api(path, **params) for _ in range(repeat + 1)][1:]
    samples = runs[0]["stats"]["samples"]
    times = [r["stats"]["timings"]["evalTotalTime"] * 1000 for r in runs]
    return (
        len(runs[0]["result"]),
        int(samples["totalQueryableSamples"]),
        int(samples["peakSamples"]),
        statistics.median(times),
    )


def fleet(nodes: int, days: int, repeat: int) -> list[Row]:
    end = math.floor(time.time() / 3600) * 3600 - 3600
    rows = []
    with tempfile.TemporaryDirectory(prefix="dashboards-fleet-") as tmp:
        work = Path(tmp)
        names = node_names(0, nodes)
        started = time.perf_counter()
        build(work, [(names, names[: nodes // 2], days)], end)
        print(f"{nodes} nodes x {days} days backfilled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        with PrometheusServer(work, extra_args=RETENTION) as prom:
            for name, expr, instant in fleet_queries():
                rows.append(
                    Row(nodes, days, name, "rollups", *measure(prom, (expr, instant), end, days * 86400, repeat))
                )
            for name, (expr, instant) in BASELINE.items():
                rows.append(
                    Row(nodes, days, name, "raw (baseline)", *measure(prom, (expr, instant), end, days * 86400, repeat))
                )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| nodes | panel / query | reads | series | samples read | peak samples | eval (ms) "
        "| samples at 1,000 nodes x 30 d |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.nodes} | {r.panel} | {r.kind} | {r.series} | {r.samples:,} | {r.peak:,} | {r.eval_ms:.1f} | "
        f"{r.at_scale() / 1e6:,.1f} M |"
        for r in rows
    ]
    return "\n".join(lines)


def summary(rows: list[Row]) -> list[str]:
    out = []
    sizes = sorted({r.nodes for r in rows})
    for kind in ("rollups", "raw (baseline)"):
        mine = [r for r in rows if r.kind == kind]
        for n in sizes:
            at = [r for r in mine if r.nodes == n]
            worst = max(at, key=lambda r: r.at_scale())
            out.append(
                f"{kind}, {n} nodes: {len(at)} queries, {sum(r.samples for r in at):,} samples read in all, "
                f"{sum(r.eval_ms for r in at):.0f} ms of evaluation; most at 1,000 nodes x 30 d: {worst.panel} "
                f"({worst.at_scale() / 1e6:,.1f} M); most series: {max(r.series for r in at)}."
            )
    if len(sizes) == 2:
        small, large = sizes

        def grew(r: Row) -> bool:
            before = next(s.series for s in rows if s.nodes == small and s.panel == r.panel and s.kind == r.kind)
            return r.nodes == large and r.series > max(before, TOP)

        grown = [f"{r.panel} ({r.kind})" for r in rows if grew(r)]
        out.append(
            f"Queries whose series count grew from {small} to {large} nodes beyond the top-N ({TOP}): "
            f"{', '.join(grown) or 'none'}."
        )
    pairs = [
        (n, name)
        for n in sizes
        for name in BASELINE
        if any(r.panel == name and r.kind == "rollups" and r.nodes == n for r in rows)
    ]
    for n, name in pairs:
        new = next(r for r in rows if r.panel == name and r.kind == "rollups" and r.nodes == n)
        old = next(r for r in rows if r.panel == name and r.kind != "rollups" and r.nodes == n)
        out.append(
            f"{n} nodes, {name}: {old.samples / max(new.samples, 1):,.1f}x fewer samples read than the raw query "
            f"({old.samples:,} -> {new.samples:,}), evaluation {old.eval_ms:.1f} -> {new.eval_ms:.1f} ms."
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="4 and 8 nodes over 2 days, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.days, args.repeat = [4, 8], 2, 2
    load_start = os.getloadavg()
    rows = [row for n in args.sizes for row in fleet(n, args.days, args.repeat)]
    extrapolate(rows)
    load_end = os.getloadavg()
    text = "\n".join(
        [
            f"# fleet dashboard queries: dgx-h100 x {args.sizes} nodes, {args.days} days at a 5m step",
            "",
            f"{os.cpu_count()} CPUs; load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; "
            f"median of {args.repeat} runs after a warm-up.",
            "",
            table(rows),
            "",
            *(f"{line}\n" for line in summary(rows)),
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboards_fleet.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
