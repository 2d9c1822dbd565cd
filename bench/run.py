"""Benchmark mig-exporter against a baseline exporter built the common way, in the same run.

    python bench/run.py [--quick] [--sizes 1,8,64]

For each node size (GPUs x 7 MIG instances, synthetic source, 1 s sampling interval) it starts
mig-exporter (`python -m exporter serve`) and the baseline (bench/baseline.py: prometheus-client
Gauges set in a loop, served by prometheus-client's start_http_server) as separate processes, then
measures, for each: the fresh-sample scrape (what Prometheus does: one scrape per new sample, with
its Accept and Accept-Encoding headers), /healthz latency across sampling cycles, CPU share at a
1 s interval scraped every 15 s and CPU per sampling cycle (from /proc/PID/stat), RSS, and
back-to-back scrapes of one sample at concurrency 1 and 32 (bench/client.py). Each figure is also
given as a ratio. Results go to bench/results/ as results.json and results.md.
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

from bench.client import percentile, probe, scrape, scrape_spaced  # noqa: E402 - after making the repository importable

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
    body_bytes: int  # the gzipped body a Prometheus scrape gets
    fresh_p50_ms: float  # one scrape per new sample, at a random moment of the sampling cycle
    fresh_p99_ms: float
    healthz_p50_ms: float | None  # /healthz probed every 20 ms across sampling cycles (None: no such endpoint)
    healthz_p99_ms: float | None
    healthz_max_ms: float | None
    floor_fresh_p50_ms: float | None  # bench/floor.py (bare aiohttp, fixed bytes) in the same windows; ours only
    floor_fresh_p99_ms: float | None
    floor_healthz_p99_ms: float | None
    floor_healthz_max_ms: float | None
    cpu_share: float  # fraction of one core at a 1 s interval, scraped every 15 s
    cpu_per_cycle_ms: float  # not scraped in that window
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


@dataclass(frozen=True)
class Windows:
    idle: float  # seconds, no scrapes: CPU per sampling cycle
    periodic: float  # seconds scraped every `every` s: CPU share
    every: float
    fresh: int  # scrapes, one per new sample
    healthz: float  # seconds of /healthz probing
    c1: float  # seconds of back-to-back scrapes
    c32: float


FULL = Windows(idle=20, periodic=60, every=15, fresh=120, healthz=20, c1=15, c32=10)
QUICK = Windows(idle=5, periodic=10, every=5, fresh=20, healthz=5, c1=3, c32=3)
FRESH_SPACING = (1.05, 1.35)  # longer than the 1 s interval: each scrape is the first of a new sample
HEALTHZ_EVERY = 0.02


def ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000


def measure_size(gpus: int, windows: Windows, workdir: Path) -> dict[str, Figures]:
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
    floor: Target | None = None
    try:
        for t in targets:
            t.wait_ready()
        time.sleep(2)
        for t in targets:
            scrape("127.0.0.1", t.port, 1, count=20)  # warm up (and ask for Prometheus' variant)
        floor_port = free_port()
        size = scrape("127.0.0.1", ours_port, 1, count=1).body_bytes
        floor = Target(
            "floor",
            [sys.executable, str(HERE / "floor.py"), "--port", str(floor_port), "--size", str(size)],
            floor_port,
            workdir / f"floor-{gpus}.log",
        )
        floor.wait_ready()
        before = {t.name: cpu_seconds(t.proc.pid) for t in targets}
        time.sleep(windows.idle)  # nobody scrapes: the sampling loops (and their rendering) run
        idle_cpu = {t.name: cpu_seconds(t.proc.pid) - before[t.name] for t in targets}
        rss_idle = {t.name: rss_mb(t.proc.pid) for t in targets}
        before = {t.name: cpu_seconds(t.proc.pid) for t in targets}
        end = time.monotonic() + windows.periodic
        while time.monotonic() < end:  # scraped like Prometheus does, every `every` seconds
            for t in targets:
                scrape("127.0.0.1", t.port, 1, count=1)
            time.sleep(max(0.0, min(windows.every, end - time.monotonic())))
        scraped_cpu = {t.name: cpu_seconds(t.proc.pid) - before[t.name] for t in targets}
        spaced = scrape_spaced([*(t.port for t in targets), floor.port], windows.fresh, FRESH_SPACING)
        fresh = dict(zip((t.name for t in targets), spaced, strict=False))
        healthz, floor_healthz = probe([ours_port, floor.port], "/healthz", HEALTHZ_EVERY, windows.healthz)
        out = {}
        for t in targets:
            c1 = scrape("127.0.0.1", t.port, 1, count=2000, duration=windows.c1)
            c32 = scrape("127.0.0.1", t.port, 32, duration=windows.c32)
            probed = healthz if t is targets[0] else None
            out[t.name] = Figures(
                series=t.series(),
                body_bytes=fresh[t.name].body_bytes,
                fresh_p50_ms=ms(fresh[t.name].latencies, 50),
                fresh_p99_ms=ms(fresh[t.name].latencies, 99),
                healthz_p50_ms=ms(probed.latencies, 50) if probed else None,
                healthz_p99_ms=ms(probed.latencies, 99) if probed else None,
                healthz_max_ms=ms(probed.latencies, 100) if probed else None,
                floor_fresh_p50_ms=ms(spaced[-1].latencies, 50) if probed else None,
                floor_fresh_p99_ms=ms(spaced[-1].latencies, 99) if probed else None,
                floor_healthz_p99_ms=ms(floor_healthz.latencies, 99) if probed else None,
                floor_healthz_max_ms=ms(floor_healthz.latencies, 100) if probed else None,
                cpu_share=scraped_cpu[t.name] / windows.periodic,
                cpu_per_cycle_ms=idle_cpu[t.name] / windows.idle * 1000,  # one cycle per second
                rss_mb=rss_idle[t.name],
                rss_after_load_mb=rss_mb(t.proc.pid),
                p50_c1_ms=ms(c1.latencies, 50),
                p99_c1_ms=ms(c1.latencies, 99),
                p50_c32_ms=ms(c32.latencies, 50),
                p99_c32_ms=ms(c32.latencies, 99),
                scrapes_per_s_c32=len(c32.latencies) / c32.elapsed,
                errors=c1.errors + c32.errors + fresh[t.name].errors + (probed.errors if probed else 0),
            )
        return out
    finally:
        for t in [*targets, *([floor] if floor else [])]:
            t.stop()


# (field, label, format, higher is better)
ROWS: list[tuple[str, str, str, bool]] = [
    (
        "fresh_p50_ms",
        "**fresh-sample scrape p50 (ms)**: one scrape per new sample, Prometheus' headers, gzip",
        "{:.3f}",
        False,
    ),
    ("fresh_p99_ms", "**fresh-sample scrape p99 (ms)**", "{:.3f}", False),
    ("healthz_p99_ms", "/healthz p99 across sampling cycles (ms)", "{:.3f}", False),
    ("healthz_max_ms", "/healthz slowest of the window (ms)", "{:.2f}", False),
    (
        "floor_fresh_p50_ms",
        "floor: the same scrapes of a bare aiohttp app serving fixed bytes, p50 (ms)",
        "{:.3f}",
        False,
    ),
    ("floor_fresh_p99_ms", "floor: the same scrapes of that app, p99 (ms)", "{:.3f}", False),
    ("floor_healthz_p99_ms", "floor: the same /healthz probes of that app, p99 (ms)", "{:.3f}", False),
    ("floor_healthz_max_ms", "floor: the slowest of those probes (ms)", "{:.2f}", False),
    ("cpu_share", "CPU share at a 1 s interval, scraped every 15 s (% of a core)", "{:.2%}", False),
    ("rss_mb", "RSS (MiB)", "{:.1f}", False),
    ("rss_after_load_mb", "RSS after the scrape load (MiB)", "{:.1f}", False),
    ("cpu_per_cycle_ms", "CPU per sampling cycle, between scrapes (ms)", "{:.2f}", False),
    ("series", "series exposed", "{:.0f}", True),
    ("body_bytes", "gzipped body (bytes)", "{:.0f}", False),
    ("p50_c1_ms", "back-to-back scrapes of one sample, p50, concurrency 1 (ms)", "{:.3f}", False),
    ("p99_c1_ms", "back-to-back scrapes of one sample, p99, concurrency 1 (ms)", "{:.3f}", False),
    ("p99_c32_ms", "back-to-back scrapes, p99, concurrency 32 (ms)", "{:.2f}", False),
    ("scrapes_per_s_c32", "scrapes per second, concurrency 32", "{:.0f}", True),
]
NO_RATIO = {
    "series",
    "body_bytes",
    "floor_fresh_p50_ms",
    "floor_fresh_p99_ms",
    "floor_healthz_p99_ms",
    "floor_healthz_max_ms",
}


def advantage(ours: float | None, base: float | None, higher_better: bool) -> str:
    """How many times better mig-exporter is (>1: better); a dash where a figure is 0 (below resolution)."""
    if not ours or not base:
        return "-"
    return f"{ours / base if higher_better else base / ours:.1f}x"


def cell(fmt: str, value: float | None) -> str:
    return "n/a" if value is None else fmt.format(value)


def table(results: dict[int, dict[str, Figures]]) -> str:
    lines = [
        "| node | figure | mig-exporter | baseline | mig-exporter advantage |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for gpus, figs in results.items():
        ours, base = asdict(figs["mig-exporter"]), asdict(figs["baseline"])
        for key, label, fmt, higher in ROWS:
            ratio = "" if key in NO_RATIO or base[key] is None else advantage(ours[key], base[key], higher)
            lines.append(f"| {gpus} GPU x 7 | {label} | {cell(fmt, ours[key])} | {cell(fmt, base[key])} | {ratio} |")
    return "\n".join(lines)


def targets(results: dict[int, dict[str, Figures]]) -> list[str]:
    """The targets at 8 and 64 GPUs, met or missed."""
    checks = []
    for gpus, p99_limit in ((8, 1.0), (64, 5.0)):
        if gpus not in results:
            continue
        ours, base = results[gpus]["mig-exporter"], results[gpus]["baseline"]
        ratio = base.fresh_p99_ms / ours.fresh_p99_ms
        checks += [
            (
                f"{gpus} GPUs: fresh-sample p99 under {p99_limit:g} ms",
                ours.fresh_p99_ms < p99_limit,
                f"{ours.fresh_p99_ms:.3f} ms",
            ),
            (f"{gpus} GPUs: fresh-sample p99 at least 20x the baseline's", ratio >= 20, f"{ratio:.0f}x"),
            (f"{gpus} GPUs: no errors", ours.errors == 0, f"{ours.errors} errors"),
        ]
    if 8 in results:
        ours = results[8]["mig-exporter"]
        rss = max(ours.rss_mb, ours.rss_after_load_mb)
        checks += [
            ("8 GPUs: RSS under 45 MiB", rss < 45, f"{rss:.1f} MiB"),
            ("8 GPUs: CPU share at most 0.47% of a core", ours.cpu_share <= 0.0047, f"{ours.cpu_share:.2%}"),
        ]
    if 64 in results:
        ours = results[64]["mig-exporter"]
        assert ours.healthz_p99_ms is not None
        checks += [
            ("64 GPUs: /healthz p99 under 5 ms", ours.healthz_p99_ms < 5, f"{ours.healthz_p99_ms:.3f} ms"),
            ("64 GPUs: CPU share under 3% of a core", ours.cpu_share < 0.03, f"{ours.cpu_share:.2%}"),
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
    parser.add_argument("--quick", action="store_true", help="short windows, for a smoke run (about 3 minutes)")
    parser.add_argument("--sizes", default="1,8,64", help="GPU counts, comma-separated (default 1,8,64)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    windows = QUICK if args.quick else FULL
    started = machine()
    results: dict[int, dict[str, Figures]] = {}
    for gpus in (int(s) for s in args.sizes.split(",")):
        print(f"measuring {gpus} GPU x 7 instances ...", file=sys.stderr, flush=True)
        results[gpus] = measure_size(gpus, windows, args.out)
    ended = machine()
    md = "\n".join(
        [
            f"Run {ended['time']} ({'--quick' if args.quick else 'full'}) on {started['cpu']}, "
            f"{started['cores']} cores, "
            f"Python {started['python']}; load average {started['load_average'][0]:.2f} at start, "
            f"{ended['load_average'][0]:.2f} at end. Sampling every 1 s; CPU share scraped every "
            f"{windows.every:g} s over {windows.periodic:g} s; {windows.fresh} fresh-sample scrapes per target.",
            "",
            table(results),
            "",
            "Targets:",
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
