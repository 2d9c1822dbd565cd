"""`mig-exporter report` at fleet size: dgx-h100 nodes x 14 days in a real Prometheus, against a same-run baseline.

For each fleet size (default 1, 4, 16, 48 nodes): simulate-history writes every node's 14 days at a 5m
step, promtool backfills them (long blocks), a Prometheus serves them, and then, one after the other:

- the report as users run it (`python -m exporter report ... --output json|html`), reading raw series;
- the baseline, `bench/raw_steps.py`: the same review with every step pulled to the client, as before;
- with `--rollups`, the report again after `promtool tsdb create-blocks-from rules` recorded the shipped
  5m rollup rules over the history (and Prometheus compacted them in).

The history is a day longer than the window, so the rollups cover all of it. The table ends with the
extrapolation to 1,000 nodes x 30 days: wall time fitted against instance-days, peak RSS against instances.

Each run is a child process: wall time, CPU (user + system) and peak RSS come from wait4(), values and
bytes received from the run's own count, Prometheus' CPU from /proc/PID/stat over the run. A warm-up
report runs first. The table is printed and written to bench/results/report_fleet.md.

    PYTHONPATH=. python bench/report_fleet.py [--sizes 1 4 16 48] [--days 14] [--rollups] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import PrometheusServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STEP = 300
INSTANCES_PER_NODE = 24  # dgx-h100: GPU instances on its seven MIG GPUs
NODES_PER_FILE = 8  # one promtool run per this many nodes keeps its memory small
TEMPLATE = "node-template:9401"
ROLLUP_GROUP = "mig-exporter.rollup.5m"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One child process: what it cost and what it received."""

    wall: float
    cpu: float
    rss_mb: float
    server_cpu: float
    values: int
    bytes: int
    requests: int
    stdout: str
    stderr: str


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(command: list[str], prometheus_pid: int) -> Run:
    """Run a child to completion; its wall time, CPU, peak RSS, and the server's CPU meanwhile."""
    server_before = _cpu_seconds(prometheus_pid)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:4]} failed: {stderr[-2000:]}")
    server = _cpu_seconds(prometheus_pid) - server_before
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, server, 0, 0, 0, stdout, stderr)


def report(url: str, days: int, end: int, pid: int, output: str) -> Run:
    """The report as users run it; the traffic figures come from its JSON (an html run repeats a json one)."""
    command = [
        sys.executable,
        "-m",
        "exporter",
        "report",
        "--prometheus",
        url,
        "--window",
        f"{days}d",
        "--end",
        str(end),
    ]
    stats = measure([*command, "--output", "json"], pid)
    run = stats if output == "json" else measure([*command, "--output", output], pid)
    source = json.loads(stats.stdout)["source"]
    run.values, run.bytes, run.requests = source["values_received"], source["bytes_received"], source["requests"]
    run.stderr = source["series"]
    return run


def baseline(url: str, days: int, end: int, pid: int, output: str) -> Run:
    command = [sys.executable, "-m", "bench.raw_steps", "--prometheus", url, "--window", f"{days}d", "--end", str(end)]
    run = measure([*command, "--output", output], pid)
    stats = json.loads(run.stderr.strip().splitlines()[-1])
    run.values, run.bytes, run.requests = stats["values_received"], stats["bytes_received"], stats["requests"]
    return run


def backfill(nodes: int, days: int, end: int, data: Path, work: Path) -> None:
    """The fleet's history, written by a child process: this one stays small, so the peak RSS of the runs it
    starts (which counts what a child shares with its parent before exec) is theirs."""
    args = ["--backfill", str(data), str(work), str(nodes), str(days), str(end)]
    subprocess.run([sys.executable, __file__, *args], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def write_history(nodes: int, days: int, end: int, data: Path, work: Path) -> None:
    """The fleet's history, NODES_PER_FILE nodes per promtool run.

    simulate-history gives equal scenarios equal values, so one dgx-h100 node is simulated and its series are
    written again under each node's instance label (families kept contiguous, as OpenMetrics wants).
    """
    one = work / "one.om"
    node = ("--scenario", "dgx-h100", "--instance", TEMPLATE, "--window", f"{days}d", "--step", "5m")
    subprocess.run(
        [sys.executable, "-m", "exporter", "simulate-history", *node, "--end", str(end), "--out", str(one)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    families: list[list[str]] = []
    with open(one) as lines:
        for line in lines:
            if line.startswith("# TYPE"):
                families.append([line])
            elif not line.startswith("# EOF"):
                families[-1].append(line)
    one.unlink()
    label = f'instance="{TEMPLATE}"'
    for first in range(0, nodes, NODES_PER_FILE):
        names = [f"node-{i:04d}:9401" for i in range(first, min(nodes, first + NODES_PER_FILE))]
        history = work / "history.om"
        with open(history, "w") as out:
            for family in families:
                out.write(family[0])
                for name in names:
                    out.writelines(line.replace(label, f'instance="{name}"') for line in family[1:])
            out.write("# EOF\n")
        block = f"--max-block-duration={days * 24 + 48}h"
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", block, "-q", str(history), str(data)],
            check=True,
            capture_output=True,
        )
        history.unlink()


def rollup_rules(work: Path) -> Path:
    """The shipped rules file's 5m rollup group alone."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "mig-exporter.rules.yml").read_text())
    group = [g for g in rules["groups"] if g["name"] == ROLLUP_GROUP]
    path = work / "rollups.yml"
    path.write_text(yaml.safe_dump({"groups": group}))
    return path


def blocks(data: Path) -> int:
    return sum(1 for p in data.iterdir() if (p / "meta.json").exists())


def record_rollups(prom: PrometheusServer, days: int, end: int, work: Path) -> None:
    """Evaluate the rollup rules over the history with promtool, into the server's data directory."""
    out = work / "rollup-blocks"
    flags = (f"--url={prom.url}", f"--start={end - days * 86400}", f"--end={end}", f"--output-dir={out}")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "rules", *flags, str(rollup_rules(work))],
        check=True,
        capture_output=True,
    )
    for block in out.iterdir():
        if (block / "meta.json").exists():
            shutil.move(str(block), prom.workdir / "data" / block.name)


def fleet(nodes: int, days: int, output: str, rollups: bool, baseline_too: bool) -> dict[str, Any]:
    """One fleet size: the history (a day longer than the window, so rollups cover all of it), the runs."""
    end = math.floor(time.time() / STEP) * STEP - 3600
    history_days = days + 1
    raw_blocks = 0
    row: dict[str, Any] = {"nodes": nodes, "instances": nodes * INSTANCES_PER_NODE, "days": days}
    with tempfile.TemporaryDirectory(prefix="report-fleet-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        backfill(nodes, history_days, end, work / "data", work)
        row["backfill_s"] = time.perf_counter() - started
        retention = [f"--storage.tsdb.retention.time={days + 30}d"]
        with PrometheusServer(work, extra_args=retention) as prom:
            assert prom.proc is not None
            report(prom.url, days, end, prom.proc.pid, "json")  # warm the server's caches
            row["report"] = report(prom.url, days, end, prom.proc.pid, output)
            if baseline_too:
                row["baseline"] = baseline(prom.url, days, end, prom.proc.pid, output)
            if rollups:
                raw_blocks = blocks(work / "data")
                started = time.perf_counter()
                record_rollups(prom, history_days, end, work)
                row["rollup_backfill_s"] = time.perf_counter() - started
        if rollups:
            with PrometheusServer(work, extra_args=retention) as prom:
                assert prom.proc is not None
                deadline = time.monotonic() + 600
                while blocks(work / "data") > raw_blocks and time.monotonic() < deadline:
                    time.sleep(5)  # Prometheus merges the rule blocks into the overlapping raw ones
                report(prom.url, days, end, prom.proc.pid, "json")
                row["rollup"] = report(prom.url, days, end, prom.proc.pid, output)
    return row


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """The targets: the report against the baseline of its run, and RSS as the fleet grows."""
    out = []
    for row in rows:
        if "baseline" in row:
            base: Run = row["baseline"]
            parts = [f"{base.wall / row[n].wall:.1f}x faster ({n})" for n in ("report", "rollup") if n in row]
            out.append(
                f"{row['nodes']} nodes x {row['days']} days: the report is {', '.join(parts)} than the baseline, "
                f"peak RSS {base.rss_mb / row['report'].rss_mb:.1f}x smaller."
            )
    by_nodes = {row["nodes"]: row for row in rows}
    if 4 in by_nodes and 48 in by_nodes:
        out.append(
            f"Peak RSS at 48 nodes / at 4 nodes: {by_nodes[48]['report'].rss_mb / by_nodes[4]['report'].rss_mb:.2f}."
        )
    return out


def extrapolate(rows: list[dict[str, Any]], name: str, nodes: int, days: int) -> str:
    """Least-squares lines through the runs: wall time against instance-days, peak RSS against instances."""
    runs = [(row["instances"], row["days"], row[name]) for row in rows if name in row]
    if len(runs) < 2:
        return ""

    def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
        n = len(points)
        mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
        slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
        return my - slope * mx, slope

    wall = fit([(i * d, r.wall) for i, d, r in runs])
    rss = fit([(i, r.rss_mb) for i, _, r in runs])
    server = fit([(i * d, r.server_cpu) for i, d, r in runs])
    instances = nodes * INSTANCES_PER_NODE
    return (
        f"Extrapolated from the {name} runs to {nodes:,} nodes x {days} days ({instances:,} instances): "
        f"wall {wall[0] + wall[1] * instances * days:.0f} s, peak RSS {rss[0] + rss[1] * instances:.0f} MB, "
        f"Prometheus CPU {server[0] + server[1] * instances * days:.0f} s "
        f"(per 1,000 instance-days: {wall[1] * 1000:.3f} s wall, {server[1] * 1000:.3f} s server CPU; "
        f"per 1,000 instances: {rss[1] * 1000:.1f} MB)."
    )


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| nodes | instances | client | wall (s) | client CPU (s) | peak RSS (MB) | Prometheus CPU (s) | requests "
        "| values received | per instance per day | bytes received |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for name in ("report", "rollup", "baseline"):
            if name not in row:
                continue
            r: Run = row[name]
            per_day = r.values / row["instances"] / row["days"]
            label = {"report": "report (raw)", "rollup": "report (rollups)", "baseline": "baseline"}[name]
            lines.append(
                f"| {row['nodes']} | {row['instances']} | {label} | {r.wall:.2f} | {r.cpu:.2f} | {r.rss_mb:.0f} | "
                f"{r.server_cpu:.2f} | {r.requests} | {r.values:,} | {per_day:.1f} | {r.bytes / 1e6:.1f} MB |"
            )
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["--backfill"]:  # the child process of backfill()
        data, work, nodes, days, end = sys.argv[2:7]
        write_history(int(nodes), int(days), int(end), Path(data), Path(work))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 48])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--output", default="json", choices=["json", "html"], help="what the report renders")
    parser.add_argument("--rollups", action="store_true", help="also run with the 5m rollup rules recorded")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline (for large check runs)")
    parser.add_argument("--quick", action="store_true", help="1 and 4 nodes over 2 days, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.days = [1, 4], 2
    load_start = os.getloadavg()
    rows = []
    for nodes in args.sizes:
        row = fleet(nodes, args.days, args.output, args.rollups, not args.no_baseline)
        rows.append(row)
        print(table([row]), flush=True)
    load_end = os.getloadavg()
    lines = [extrapolate(rows, name, 1000, 30) for name in ("rollup", "report")]
    text = "\n".join(
        [
            f"# report at fleet size: dgx-h100 x {args.sizes} nodes, {args.days} days at 5m, --output {args.output}",
            "",
            f"{os.cpu_count()} CPUs; load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end.",
            "",
            table(rows),
            "",
            *(f"{line}\n" for line in [*ratios(rows), *lines] if line),
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report_fleet.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
