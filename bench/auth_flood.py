"""A password flood against basic auth, beside an unauthenticated baseline in the same run.

Two real `serve` processes on the dgx-h100 scenario: one behind basic auth (a cost-10 bcrypt hash, as
`htpasswd -nBC 10` makes), one with the same web-config minus its users (the baseline; with --tls both
serve HTTPS). Each goes through three phases while a scraper with valid credentials scrapes it every
50 ms over one keep-alive connection, as Prometheus does: before (10 s), a flood (`--clients`
connections for `--seconds` s, each sending a new wrong password, or for the baseline the same
requests, as fast as they are answered), and after (10 s). Per phase: the scraper's p50, p99 and worst
latency, its failed scrapes, and the server's peak and last RSS; after the flood, for the auth target,
how long credentials never checked before take to be let in.

    PYTHONPATH=$PWD python bench/auth_flood.py [--clients 48] [--seconds 20] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.flood import FloodProcess, basic, rss_mb, scrape_every, seconds_until_let_in
from tests.support.processes import ExporterProcess
from tests.support.tls import Pki, bcrypt_hash

SCRAPE_EVERY = 0.05
QUIET_SECONDS = 10.0


@dataclass
class Phase:
    scrapes: int
    failures: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_peak_mb: float
    rss_end_mb: float


async def phase(
    pid: int, url: str, seconds: float, context: ssl.SSLContext | None, flood: FloodProcess | None
) -> Phase:
    """Scrape for `seconds` (with the flood running, if one is given), sampling the server's RSS."""
    stop = asyncio.Event()
    scraper = asyncio.create_task(scrape_every(url, basic("prometheus", "secret"), SCRAPE_EVERY, stop, context))
    peak = rss_mb(pid)
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        await asyncio.sleep(0.2)
        peak = max(peak, rss_mb(pid))
    if flood is not None:
        flood.stop()
    stop.set()
    scrapes = await scraper
    ordered = sorted(scrapes.latencies) or [float("nan")]
    return Phase(
        scrapes=len(scrapes.latencies),
        failures=len(scrapes.failures),
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=scrapes.p99() * 1000,
        max_ms=ordered[-1] * 1000,
        rss_peak_mb=peak,
        rss_end_mb=rss_mb(pid),
    )


async def measure(
    exporter: ExporterProcess, clients: int, seconds: float, context: ssl.SSLContext | None, ca: Path | None
) -> tuple[dict[str, Phase], float | None]:
    assert exporter.proc is not None
    pid, url = exporter.proc.pid, exporter.url + "/metrics"
    phases = {"before": await phase(pid, url, QUIET_SECONDS, context, None)}
    phases["flood"] = await phase(pid, url, seconds, context, FloodProcess(url, clients, "prometheus", ca))
    recovery = await seconds_until_let_in(url, basic("backup", "other"), 60, context)
    phases["after"] = await phase(pid, url, QUIET_SECONDS, context, None)
    return phases, recovery


def start(folder: Path, users: bool, tls: Pki | None) -> ExporterProcess:
    config = folder / ("auth.yml" if users else "open.yml")
    lines = []
    if tls is not None:
        lines += ["tls_server_config:", "  cert_file: server.crt", "  key_file: server.key"]
    if users:
        secret, other = bcrypt_hash("secret", 10), bcrypt_hash("other", 10)
        lines += ["basic_auth_users:", f"  prometheus: {secret}", f"  backup: {other}"]
    config.write_text("\n".join(lines) + "\n")
    args = ["--source", "synthetic", "--scenario", "dgx-h100", "--web-config", str(config)]
    exporter = ExporterProcess(args, log_path=folder / f"{config.stem}.log", headers=basic("prometheus", "secret"))
    if tls is not None:
        exporter.url = exporter.url.replace("http://", "https://")
        context = ssl.create_default_context(cafile=str(tls.ca.cert))

        def ready() -> bool:
            import urllib.request

            request = urllib.request.Request(exporter.url + "/healthz")
            with urllib.request.urlopen(request, context=context, timeout=1) as response:
                return bool(response.status == 200)

        exporter._ready = ready  # type: ignore[method-assign]
    return exporter.start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=48, help="flooding connections (default 48)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the flood (default 20)")
    parser.add_argument("--tls", action="store_true", help="serve and flood over HTTPS")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    folder = args.out / "auth-flood"
    folder.mkdir(parents=True, exist_ok=True)
    pki = None
    if args.tls:
        pki = Pki(folder)
        pki.issue("server", "127.0.0.1", server=True)
    context = ssl.create_default_context(cafile=str(pki.ca.cert)) if pki else None
    load_start = os.getloadavg()[0]
    results: dict[str, tuple[dict[str, Phase], float | None]] = {}
    for name, users in (("basic auth", True), ("no auth (baseline)", False)):
        exporter = start(folder, users, pki)
        try:
            results[name] = asyncio.run(
                measure(exporter, args.clients, args.seconds, context, pki.ca.cert if pki else None)
            )
        finally:
            exporter.stop()
        if not users:
            results[name] = (results[name][0], None)
    lines = [
        f"{args.clients} {'TLS ' if args.tls else ''}connections flooding for {args.seconds:g} s; a scrape every "
        f"{SCRAPE_EVERY * 1000:.0f} ms; {os.cpu_count()} cores, load average {load_start:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end.",
        "",
        "| target | phase | scrapes | failed | p50 (ms) | p99 (ms) | worst (ms) | peak RSS (MB) | RSS at end (MB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (phases, _) in results.items():
        for label, p in phases.items():
            lines.append(
                f"| {name} | {label} | {p.scrapes} | {p.failures} | {p.p50_ms:.1f} | {p.p99_ms:.1f} | {p.max_ms:.1f} "
                f"| {p.rss_peak_mb:.1f} | {p.rss_end_mb:.1f} |"
            )
    auth, base = results["basic auth"][0], results["no auth (baseline)"][0]
    recovery = results["basic auth"][1]
    lines += [
        "",
        f"- scrape p99 in the password flood / the baseline's in its flood: "
        f"{auth['flood'].p99_ms / base['flood'].p99_ms:.2f}x; / the baseline's at rest: "
        f"{auth['flood'].p99_ms / base['before'].p99_ms:.2f}x",
        f"- RSS growth in the flood: {auth['flood'].rss_peak_mb - auth['before'].rss_end_mb:+.1f} MB with basic auth, "
        f"{base['flood'].rss_peak_mb - base['before'].rss_end_mb:+.1f} MB without",
        f"- credentials never checked before, let in {recovery:.2f} s after the flood ended"
        if recovery is not None and recovery != float("inf")
        else "- credentials never checked before: still refused 60 s after the flood",
    ]
    report = "\n".join(lines) + "\n"
    (args.out / f"auth-flood{'-tls' if args.tls else ''}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
