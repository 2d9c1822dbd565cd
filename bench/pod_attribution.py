"""Scrape latency, render time, RSS and CPU with pod attribution off, on, and on with --pod-labels.

Three real `serve` processes on the dgx-h100 scenario run side by side against one fake kubelet
(the scenario's pods, refreshed every second) and are scraped in turn, so all three see the same
machine load; figures are reported as ratios to the attribution-off baseline of the same run.

    PYTHONPATH=$PWD python bench/pod_attribution.py [--scrapes 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.exposition.health import exporter_families
from exporter.exposition.native import native_families
from exporter.exposition.pods import pod_families, with_pod_labels
from exporter.exposition.render import Renderer
from exporter.exposition.template import Format
from exporter.kubernetes.refresher import PodAttributionRefresher
from tests.support.kubelet import FakeKubelet, dgx_pods, short_socket_dir
from tests.support.processes import ExporterProcess
from tests.support.snapshots import fixed_snapshot

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds used so far) of a process, from /proc."""
    rss_kib = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return rss_kib / 1024, cpu


def scrape(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        response.read()
    return time.perf_counter() - started


def render_times(rounds: int) -> dict[str, float]:
    """Median seconds to render one dgx-h100 sample per configuration (in-process, no HTTP; template built)."""
    import asyncio

    snapshot = fixed_snapshot("dgx-h100")
    folder = short_socket_dir()
    with FakeKubelet(os.path.join(folder, "kubelet.sock"), dgx_pods(snapshot.topology)) as kubelet:
        refresher = PodAttributionRefresher(kubelet.socket_path)
        asyncio.run(refresher.refresh())
    shutil.rmtree(folder, ignore_errors=True)
    configs = {
        "off": (native_families, exporter_families),
        "on": (native_families, exporter_families, pod_families(refresher)),
        "on+pod-labels": (with_pod_labels(native_families, refresher), exporter_families, pod_families(refresher)),
    }
    renderers = {name: Renderer(builders) for name, builders in configs.items()}
    for renderer in renderers.values():
        renderer.render(snapshot, Format.OPENMETRICS)  # the template, built once per shape
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):  # interleaved, so all configurations see the same machine load
        for name, renderer in renderers.items():
            started = time.perf_counter()
            renderer.render(snapshot, Format.OPENMETRICS)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=300, help="scrapes per configuration")
    parser.add_argument("--settle", type=float, default=20, help="seconds to run before measuring CPU")
    args = parser.parse_args()

    snapshot = fixed_snapshot("dgx-h100")
    folder = short_socket_dir()
    base = ["--source", "synthetic", "--scenario", "dgx-h100", "--interval", "1", "--kubelet-interval", "1"]
    with FakeKubelet(os.path.join(folder, "kubelet.sock"), dgx_pods(snapshot.topology)) as kubelet:
        configs = {
            "off": [*base, "--kubelet-socket", ""],
            "on": [*base, "--kubelet-socket", kubelet.socket_path],
            "on+pod-labels": [*base, "--kubelet-socket", kubelet.socket_path, "--pod-labels"],
        }
        exporters = {name: ExporterProcess(a).start() for name, a in configs.items()}
        try:
            time.sleep(2)
            before = {n: proc_stats(e.proc.pid) for n, e in exporters.items()}  # type: ignore[union-attr]
            t0 = time.monotonic()
            time.sleep(args.settle)
            idle = {n: proc_stats(e.proc.pid) for n, e in exporters.items()}  # type: ignore[union-attr]
            idle_s = time.monotonic() - t0
            latencies: dict[str, list[float]] = {n: [] for n in exporters}
            for _ in range(args.scrapes):
                for name, exporter in exporters.items():
                    latencies[name].append(scrape(exporter.url))
            after = {n: proc_stats(e.proc.pid) for n, e in exporters.items()}  # type: ignore[union-attr]
        finally:
            for exporter in exporters.values():
                exporter.stop()
    shutil.rmtree(folder, ignore_errors=True)

    renders = render_times(200)
    base_lat = statistics.median(latencies["off"])
    print(f"dgx-h100, {args.scrapes} scrapes per configuration, interleaved; kubelet List every 1 s")
    print(
        f"{'config':<15} {'median ms':>9} {'p99 ms':>7} {'ratio':>6} {'render ms':>9} {'ratio':>6} "
        f"{'RSS MiB':>8} {'idle CPU %':>10}"
    )
    for name, values in latencies.items():
        values.sort()
        median = statistics.median(values)
        p99 = values[int(0.99 * (len(values) - 1))]
        cpu_pct = 100 * (idle[name][1] - before[name][1]) / idle_s
        print(
            f"{name:<15} {median * 1e3:9.2f} {p99 * 1e3:7.2f} {median / base_lat:6.2f} "
            f"{renders[name] * 1e3:9.2f} {renders[name] / renders['off']:6.2f} {after[name][0]:8.1f} {cpu_pct:10.1f}"
        )


if __name__ == "__main__":
    main()
