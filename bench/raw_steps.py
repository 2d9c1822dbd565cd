"""The capacity review the way it was read before the server aggregated: every step pulled to the client.

Per chunk of at most two days: range queries of `avg_over_time` / `max_over_time` over one step for
activity and memory (every step of every instance travels as JSON) and instant `last_over_time` identity
queries, folded in Python into the same tallies the product fills from server-side aggregates (memory from
the per-step means, the shown p95 from a 1/1000 histogram, as before), then reviewed by the same code. It is
the baseline of bench/report_fleet.py and the reference the tests compare the product's decisions against.

    PYTHONPATH=. python -m bench.raw_steps --prometheus URL --window 14d --end T [--output json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence

from exporter.cli.main import build_parser
from exporter.cli.report import RENDERERS, ReportOptions, options_from
from exporter.mig.catalog import board_for_model
from exporter.report.collect import GpuSeen, InstanceSeen, ShardHistory
from exporter.report.prometheus import PrometheusClient
from exporter.report.queries import ACTIVITY, GPU_INFO, INSTANCE_INFO, MEMORY_TOTAL, MEMORY_USED, POD_INFO
from exporter.report.review import Review, ReviewBuilder
from exporter.report.rightsize import fit_thresholds
from exporter.report.stats import Grid, InstanceKey, Tally, idle_below
from exporter.timespec import format_duration

CHUNK_SECONDS = 2 * 86400
MAX_POINTS_PER_QUERY = 11_000  # Prometheus' limit per series of a range query


def chunks(grid: Grid) -> list[tuple[float, float]]:
    """Consecutive ranges of at most two days and 11,000 steps covering the grid."""
    per = min(MAX_POINTS_PER_QUERY, max(1, math.floor(CHUNK_SECONDS / grid.step)))
    out, first = [], 0
    while first < grid.points:
        last = min(grid.points, first + per) - 1
        out.append((grid.time(first), grid.time(last)))
        first = last + 1
    return out


HISTOGRAM_BINS = 1000  # the shown p95, as the report read it before: the nearest rank of 1/1000-wide bins


class StepFolder:
    """Folds per-step values into tallies: the client-side twin of the product's PromQL aggregates."""

    def __init__(self, grid: Grid, options: ReportOptions, heat: bool) -> None:
        self.grid = grid
        self.options = options
        self.heat = heat
        self.low = idle_below(options.policy.idle_threshold)
        self.history = ShardHistory(())
        self.histograms: dict[InstanceKey, list[int]] = {}
        self.heat_sums: dict[InstanceKey, dict[int, list[float]]] = {}

    def instance(self, labels: Mapping[str, str]) -> InstanceSeen:
        key = InstanceKey(
            labels.get(self.options.node_label, ""),
            labels.get("gpu", ""),
            labels.get("gi", ""),
            labels.get("profile", ""),
        )
        seen = self.history.instances.get(key)
        if seen is None:
            policy = self.options.policy
            tally = Tally(policy.idle_threshold, fit_thresholds(key.profile, policy))
            seen = self.history.instances[key] = InstanceSeen(key, tally)
        return seen

    def activity_means(self, labels: Mapping[str, str], points: Sequence[tuple[float, float]]) -> None:
        seen = self.instance(labels)
        tally = seen.tally
        histogram = self.histograms.setdefault(seen.key, [0] * (HISTOGRAM_BINS + 1))
        columns = self.heat_sums.setdefault(seen.key, {})
        for t, value in points:
            if math.isnan(value):
                continue
            tally.steps += 1
            tally.total += value
            histogram[round(min(1.0, max(0.0, value)) * HISTOGRAM_BINS)] += 1
            for slices, threshold in tally.thresholds.items():
                tally.fits[slices] += value <= threshold
            if value >= self.low:
                tally.active[self.grid.day(t)] += 1
            if self.heat:
                column = columns.setdefault(self.grid.index(t) // self.grid.column_steps, [0.0, 0.0])
                column[0] += value
                column[1] += 1

    def activity_maxima(self, labels: Mapping[str, str], points: Sequence[tuple[float, float]]) -> None:
        tally = self.instance(labels).tally
        tally.peak = max([tally.peak, *(v for _, v in points if not math.isnan(v))])

    def memory_means(self, labels: Mapping[str, str], points: Sequence[tuple[float, float]]) -> None:
        tally = self.instance(labels).tally
        for _, value in points:
            if not math.isnan(value):
                tally.memory_total += value
                tally.memory_samples += 1

    def memory_maxima(self, labels: Mapping[str, str], points: Sequence[tuple[float, float]]) -> None:
        tally = self.instance(labels).tally
        tally.memory_peak = max([tally.memory_peak, *(v for _, v in points if not math.isnan(v))])

    def finish(self) -> ShardHistory:
        for key, histogram in self.histograms.items():
            tally = self.history.instances[key].tally
            rank, seen = max(1, math.ceil(0.95 * tally.steps)), 0
            for index, count in enumerate(histogram):
                seen += count
                if seen >= rank:
                    tally.quantiles.append((tally.steps, index / HISTOGRAM_BINS))
                    break
        for key, columns in self.heat_sums.items():
            self.history.instances[key].tally.heat = {c: s / n for c, (s, n) in columns.items()}
        return self.history


async def pull(options: ReportOptions, heat: bool = False) -> tuple[ShardHistory, PrometheusClient]:
    """Every step of the window, pulled and folded; identity as the report read it, per chunk."""
    grid = options.grid
    sel = (lambda m: f"{m}{{{options.matchers}}}") if options.matchers else (lambda m: m)
    window = f"[{format_duration(grid.step - 0.001)}]"
    folder = StepFolder(grid, options, heat)
    client = PrometheusClient(options.url, options.credentials, timeout=options.timeout)
    async with client:
        parts = chunks(grid)
        last_seen: dict[tuple[str, str], GpuSeen] = {}
        held: dict[tuple[str, str, str], set[str]] = {}
        for index, (start, end) in enumerate(parts):
            last = index == len(parts) - 1
            lookback = f"[{format_duration(end - start + grid.step)}]"
            ranges = await asyncio.gather(
                *(
                    client.query_range(f"{fn}({sel(metric)}{window})", start, end, grid.step)
                    for fn, metric in (
                        ("avg_over_time", ACTIVITY),
                        ("max_over_time", ACTIVITY),
                        ("avg_over_time", MEMORY_USED),
                        ("max_over_time", MEMORY_USED),
                    )
                )
            )
            for fold, result in zip(
                (folder.activity_means, folder.activity_maxima, folder.memory_means, folder.memory_maxima),
                ranges,
                strict=True,
            ):
                for series in result:
                    fold(series.labels, series.points)
            info, gpu_info, totals, pods = await asyncio.gather(
                *(
                    client.query(f"last_over_time({sel(m)}{lookback})", end)
                    for m in (INSTANCE_INFO, GPU_INFO, MEMORY_TOTAL, POD_INFO)
                )
            )
            for sample in info:
                seen = folder.instance(sample.labels)
                start_label = sample.labels.get("placement_start", "")
                seen.placement_start = int(start_label) if start_label.isdigit() else None
                seen.present = seen.present or last
            for sample in gpu_info:
                labels = sample.labels
                where = (labels.get(options.node_label, ""), labels.get("gpu", ""))
                model = labels.get("model", "")
                mig = labels.get("mig_mode", "").startswith("enabled")
                last_seen[where] = GpuSeen(where[0], where[1], model, mig, board_for_model(model), present=last)
            for sample in totals:
                folder.instance(sample.labels).memory_total_bytes = sample.value
            for sample in pods:
                labels = sample.labels
                where3 = (labels.get(options.node_label, ""), labels.get("gpu", ""), labels.get("gi", ""))
                held.setdefault(where3, set()).add(f"{labels.get('namespace', '')}/{labels.get('pod', '')}")
        for seen in folder.history.instances.values():
            seen.pods = held.get((seen.key.node, seen.key.gpu, seen.key.gi), set())
        history = folder.finish()
        history.gpus.update(last_seen)
    return history, client


async def review(options: ReportOptions, heat: bool = False) -> tuple[Review, PrometheusClient]:
    history, client = await pull(options, heat)
    builder = ReviewBuilder(options.grid, options.policy, heat=heat)
    builder.add(history)
    return builder.finish(options.url), client


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--window", default="7d")
    parser.add_argument("--end", default="now")
    parser.add_argument("--output", default="json", choices=sorted(RENDERERS))
    args = parser.parse_args(argv)
    report_args = ["report", "--prometheus", args.prometheus, "--window", args.window, "--end", args.end]
    options = options_from(build_parser().parse_args([*report_args, "--output", args.output]), time.time())
    result, client = asyncio.run(review(options, heat=args.output == "html"))
    sys.stdout.write(RENDERERS[args.output](result))
    traffic = client.traffic
    stats = {"requests": traffic.requests, "bytes_received": traffic.bytes, "values_received": traffic.values}
    print(json.dumps(stats), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
