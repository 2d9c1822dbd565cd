"""Benchmark mig-exporter against a baseline exporter built the common way, in the same run.

    python bench/run.py [--quick] [--sizes 1,8,64]

For each node size (GPUs x 7 MIG instances, synthetic source, 1 s sampling interval) it starts
mig-exporter (`python -m exporter serve`) and the baseline (bench/baseline.py: prometheus-client
Gauges set in a loop, served by prometheus-client's start_http_server) as separate processes, then
measures, for each: CPU share while idle at a 1 s interval and CPU per sampling cycle (from
/proc/PID/stat over a window), scrape latency p50/p99 at concurrency 1 and 32 and scrapes per second
at 32 (bench/client.py, Prometheus' Accept and Accept-Encoding headers), and RSS. Each figure is
also given as a ratio. Results go to bench/results/ as results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.client import percentile, scrape  # noqa: E402 - after making the repository importable

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
INSTANCE_PATTERNS = [
    "0.8",
    "idle",
    "{pattern: diurnal, mean: 0.5, amplitude: 0.3, noise: 0.05}",
    "{pattern: bursty, high: 0.9, low: 0.05, period: 300, duty: 0.4}",
    "0.35",
    "{pattern: ramp, start: 0.1, end: 0.9, period: 3600}",
    "{pattern: steady, level: 0.6, noise: 0.1}",
]


@dataclass
class Figures:
    series: int
    body_bytes: int
    cpu_share: float  # fraction of one core at a 1 s interval, scraped every `scrape_every` s
    cpu_per_cycle_ms: float  # idle: sampling only
    p50_periodic_ms: float  # the periodic scrapes: each is the first of a new sample
    rss_mb: float  # after the idle window
    rss_after_load_mb: float
    p50_c1_ms: float
    p99_c1_ms: float
    p50_c32_ms: float
    p99_c32_ms: float
    scrapes_per_s_c32: float
    errors: int


def scenario_file(gpus: int, folder: Path) -> Path:
    """A node of `gpus` H100s, each split into seven 1g.10gb instances with varied workloads."""
    lines = [f"name: bench-{gpus}", "seed: 3", "gpus:"]
    for g in range(gpus):
        lines.append("  - board: h100-80gb")
        lines.append("    instances:")
        for i in range(7):
            pattern = INSTANCE_PATTERNS[(g + i) % len(INSTANCE_PATTERNS)]
            lines.append(f"      - {{profile: 1g.10gb, activity: {pattern}, memory: 0.{(g + i) % 9 + 1}}}")
    path = folder / f"bench-{gpus}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


class Target:
    """One exporter process under test."""

    def __init__(self, name: str, args: list[str], port: int, log: Path) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._log = open(log, "wb")  # noqa: SIM115 - kept open for the child's life
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                get(self.url + "/metrics")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s")

    def series(self) -> int:
        body = get(self.url + "/metrics").decode()
        return sum(1 for line in body.splitlines() if line and not line.startswith("#"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


def measure_size(gpus: int, quick: bool, workdir: Path) -> dict[str, Figures]:
    scenario = scenario_file(gpus, workdir)
    ours_port, base_port = free_port(), free_port()
    targets = [
        Target(
            "mig-exporter",
            [sys.executable, "-m", "exporter", "serve", "--source", "synthetic", "--scenario", str(scenario),
             "--listen", f"127.0.0.1:{ours_port}", "--interval", "1"],
            ours_port,
            workdir / f"mig-exporter-{gpus}.log",
        ),
        Target(
            "baseline",
            [sys.executable, str(HERE / "baseline.py"), "--scenario", str(scenario), "--port", str(base_port),
             "--interval", "1"],
            base_port,
            workdir / f"baseline-{gpus}.log",
        ),
    ]  # fmt: skip
    try:
        for t in targets:
            t.wait_ready()
        time.sleep(2)
        for t in targets:
            scrape("127.0.0.1", t.port, 1, count=20)  # warm up
        idle_window, window, every = (5.0, 10.0, 5.0) if quick else (30.0, 60.0, 15.0)
        before = {t.name: cpu_seconds(t.proc.pid) for t in targets}
        time.sleep(idle_window)  # nobody scrapes: only the sampling loops run
        idle_cpu = {t.name: cpu_seconds(t.proc.pid) - before[t.name] for t in targets}
        before = {t.name: cpu_seconds(t.proc.pid) for t in targets}
        periodic: dict[str, list[float]] = {t.name: [] for t in targets}
        end = time.monotonic() + window
        while time.monotonic() < end:  # scraped like Prometheus does, every `every` seconds
            for t in targets:
                periodic[t.name] += scrape("127.0.0.1", t.port, 1, count=1).latencies
            time.sleep(max(0.0, min(every, end - time.monotonic())))
        scraped_cpu = {t.name: cpu_seconds(t.proc.pid) - before[t.name] for t in targets}
        out = {}
        for t in targets:
            rss_idle = rss_mb(t.proc.pid)
            c1 = scrape("127.0.0.1", t.port, 1, count=300 if quick else 2000, duration=5.0 if quick else 20.0)
            c32 = scrape("127.0.0.1", t.port, 32, duration=3.0 if quick else 10.0)
            out[t.name] = Figures(
                series=t.series(),
                body_bytes=c32.body_bytes,
                cpu_share=scraped_cpu[t.name] / window,
                cpu_per_cycle_ms=idle_cpu[t.name] / idle_window * 1000,  # one cycle per second
                p50_periodic_ms=percentile(periodic[t.name], 50) * 1000,
                rss_mb=rss_idle,
                rss_after_load_mb=rss_mb(t.proc.pid),
                p50_c1_ms=percentile(c1.latencies, 50) * 1000,
                p99_c1_ms=percentile(c1.latencies, 99) * 1000,
                p50_c32_ms=percentile(c32.latencies, 50) * 1000,
                p99_c32_ms=percentile(c32.latencies, 99) * 1000,
                scrapes_per_s_c32=len(c32.latencies) / c32.elapsed,
                errors=c1.errors + c32.errors,
            )
        return out
    finally:
        for t in targets:
            t.stop()


# (field, label, format, higher is better)
ROWS: list[tuple[str, str, str, bool]] = [
    ("series", "series exposed", "{:.0f}", True),
    ("p50_c1_ms", "scrape latency p50, concurrency 1 (ms)", "{:.3f}", False),
    ("p99_c1_ms", "scrape latency p99, concurrency 1 (ms)", "{:.3f}", False),
    ("p50_c32_ms", "scrape latency p50, concurrency 32 (ms)", "{:.2f}", False),
    ("p99_c32_ms", "scrape latency p99, concurrency 32 (ms)", "{:.2f}", False),
    ("scrapes_per_s_c32", "scrapes per second, concurrency 32", "{:.0f}", True),
    ("p50_periodic_ms", "latency of a periodic scrape, the first of its sample (ms)", "{:.2f}", False),
    ("cpu_per_cycle_ms", "CPU per sampling cycle, not scraped (ms)", "{:.2f}", False),
    ("cpu_share", "CPU share at a 1 s interval, scraped periodically (% of a core)", "{:.2%}", False),
    ("rss_mb", "RSS (MB)", "{:.1f}", False),
    ("rss_after_load_mb", "RSS after the scrape load (MB)", "{:.1f}", False),
]


def advantage(ours: float, base: float, higher_better: bool) -> str:
    """How many times better mig-exporter is (>1: better); a dash where a figure is 0 (below resolution)."""
    if not ours or not base:
        return "-"
    return f"{ours / base if higher_better else base / ours:.1f}x"


def table(results: dict[int, dict[str, Figures]]) -> str:
    lines = [
        "| node | figure | mig-exporter | baseline | mig-exporter advantage |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for gpus, figs in results.items():
        ours, base = asdict(figs["mig-exporter"]), asdict(figs["baseline"])
        for key, label, fmt, higher in ROWS:
            ratio = "" if key == "series" else advantage(ours[key], base[key], higher)
            lines.append(f"| {gpus} GPU x 7 | {label} | {fmt.format(ours[key])} | {fmt.format(base[key])} | {ratio} |")
    return "\n".join(lines)


def targets(results: dict[int, dict[str, Figures]]) -> list[str]:
    """The targets on a DGX H100-sized node (8 GPUs), met or missed."""
    if 8 not in results:
        return []
    ours, base = results[8]["mig-exporter"], results[8]["baseline"]
    checks = [
        ("scrape p99 at concurrency 1 under 1 ms", ours.p99_c1_ms < 1.0, f"{ours.p99_c1_ms:.3f} ms"),
        (
            "at least 20x the baseline's scrape throughput",
            ours.scrapes_per_s_c32 >= 20 * base.scrapes_per_s_c32,
            f"{ours.scrapes_per_s_c32 / base.scrapes_per_s_c32:.1f}x",
        ),
        ("under 1% of a core at a 1 s interval", ours.cpu_share < 0.01, f"{ours.cpu_share:.2%}"),
        ("RSS under 60 MB", ours.rss_after_load_mb < 60, f"{ours.rss_after_load_mb:.1f} MB"),
        ("no scrape errors", ours.errors == 0, f"{ours.errors} errors"),
    ]
    return [f"- {'met' if ok else 'MISSED'}: {what} ({value})" for what, ok, value in checks]


def machine() -> dict[str, Any]:
    names = [
        line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line
    ]
    model = names[0] if names else platform.processor()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="short windows (5+10 s CPU, scraped every 5 s; 3 s load) for a smoke run"
    )
    parser.add_argument("--sizes", default="1,8,64", help="GPU counts, comma-separated (default 1,8,64)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = machine()
    results: dict[int, dict[str, Figures]] = {}
    for gpus in (int(s) for s in args.sizes.split(",")):
        print(f"measuring {gpus} GPU x 7 instances ...", file=sys.stderr, flush=True)
        results[gpus] = measure_size(gpus, args.quick, args.out)
    ended = machine()
    md = "\n".join(
        [
            f"Run {ended['time']} ({'--quick' if args.quick else 'full'}) on {started['cpu']}, "
            f"{started['cores']} cores, "
            f"Python {started['python']}; load average {started['load_average'][0]:.2f} at start, "
            f"{ended['load_average'][0]:.2f} at end. Sampling every 1 s; periodic scrapes every "
            f"{'5' if args.quick else '15'} s over {'10' if args.quick else '60'} s.",
            "",
            table(results),
            "",
            "Targets on a DGX H100-sized node (8 GPUs x 7 instances):",
            "",
            *targets(results),
            "",
        ]
    )
    (args.out / "results.md").write_text(md)
    doc = {
        "machine": {"start": started, "end": ended},
        "quick": args.quick,
        "results": {str(g): {name: asdict(f) for name, f in figs.items()} for g, figs in results.items()},
    }
    (args.out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
