"""How long `mig-exporter report` takes over 14 days of a dgx-h100 node at a 5m step.

Backfills a real Prometheus (promtool) with the simulated history, then times, in the same run:
the baseline, plain range queries that read the activity series once over the same chunks;
and the whole report (every query, statistics, right-sizing, packing, and each renderer).
Run from the repository root: `PYTHONPATH=$PWD python bench/report_dgx.py [--days 14] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from exporter.cli.main import build_parser
from exporter.cli.report import RENDERERS, options_from, review
from exporter.report.collect import CHUNK_SECONDS
from exporter.report.prometheus import PrometheusClient, chunks
from exporter.sources.synthetic.history import Node, sample_times
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.history import backfill
from tests.support.processes import PrometheusServer

STEP = 300


async def baseline(url: str, start: float, end: float) -> None:
    async with PrometheusClient(url) as client:
        for a, b in chunks(start, end, STEP, CHUNK_SECONDS // STEP):
            await client.query_range("mig_instance_gr_engine_active_ratio", a, b, STEP)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    end = math.floor(time.time() / STEP) * STEP - STEP
    start = end - args.days * 86400
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        times = sample_times(start, end, STEP)
        samples = backfill([Node("dgx-h100:9401", Simulator(load("dgx-h100")))], times, workdir / "data")
        print(f"history + backfill: {samples} samples in {time.perf_counter() - t0:.1f}s")
        with PrometheusServer(workdir, extra_args=[f"--storage.tsdb.retention.time={args.days + 2}d"]) as prom:
            argv = ["report", "--prometheus", prom.url, "--window", f"{args.days}d", "--end", str(end)]
            options = options_from(build_parser().parse_args(argv), time.time())
            asyncio.run(review(options))  # warm Prometheus' caches before timing
            base, full = [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                asyncio.run(baseline(prom.url, start, end))
                base.append(time.perf_counter() - t)
                t = time.perf_counter()
                result = asyncio.run(review(options))
                for render in RENDERERS.values():
                    render(result)
                full.append(time.perf_counter() - t)
    b, f = statistics.median(base), statistics.median(full)
    print(f"baseline (read activity once): median {b:.2f}s over {args.repeat} runs")
    print(f"report (all queries + md, html, json): median {f:.2f}s over {args.repeat} runs; {f / b:.1f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
