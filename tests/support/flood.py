"""A password flood and a scraper beside it, against a running exporter (tests and bench/auth_flood.py).

The flood: `clients` connections, each sending requests with a new wrong password as fast as they are
answered (half for the listed user, half for unknown users; after a 503, which says the server has too
many to check, 50 ms later), reconnecting when the server closes. It runs in a process of its own
(`python -m tests.support.flood`), so the scraper's timings are not the flood's own scheduling. The
scraper: one keep-alive connection with valid credentials, every `interval` seconds, timing each scrape.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import ssl
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096 / 2**20


@dataclass
class Scrapes:
    latencies: list[float] = field(default_factory=list)  # seconds, of the scrapes answered 200
    failures: list[str] = field(default_factory=list)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("inf")


async def password_flood(
    url: str, clients: int, stop: asyncio.Event, user: str, context: ssl.SSLContext | None = None
) -> Counter[str]:
    """Flood until `stop` is set, then leave at once, abandoning requests in flight as an attacker would;
    the answers by status (or error name)."""
    answers: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(number: int) -> None:
        connector = aiohttp.TCPConnector(limit=1, ssl=context if context is not None else False)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            attempt = 0
            while True:
                attempt += 1
                who = user if attempt % 2 else f"intruder-{number}"
                try:
                    async with session.get(url, headers=basic(who, f"guess-{number}-{attempt}")) as response:
                        await response.read()
                        answers[str(response.status)] += 1
                    if response.status == 503:
                        await asyncio.sleep(0.05)
                except (aiohttp.ClientError, OSError) as exc:
                    answers[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return answers


async def scrape_every(
    url: str, headers: dict[str, str], interval: float, stop: asyncio.Event, context: ssl.SSLContext | None = None
) -> Scrapes:
    """Scrape like Prometheus (one keep-alive connection) every `interval` s until `stop` is set."""
    out = Scrapes()
    connector = aiohttp.TCPConnector(limit=1, ssl=context if context is not None else False)
    timeout = aiohttp.ClientTimeout(total=10)  # Prometheus' default scrape timeout
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with session.get(url, headers={**PROMETHEUS_HEADERS, **headers}) as response:
                    body = await response.read()
                    if response.status == 200 and len(body) > 1000:
                        out.latencies.append(time.perf_counter() - started)
                    else:
                        out.failures.append(f"HTTP {response.status}")
            except (aiohttp.ClientError, OSError) as exc:
                out.failures.append(repr(exc))
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    return out


async def seconds_until_let_in(
    url: str, headers: dict[str, str], timeout: float, context: ssl.SSLContext | None = None
) -> float:
    """How long until a scrape with these (never checked) credentials is answered 200; inf after `timeout`."""
    started = time.monotonic()
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        while time.monotonic() - started < timeout:
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.05)
    return float("inf")


class FloodProcess:
    """password_flood() in a child process, from start() until stop(), which returns its answers."""

    def __init__(self, url: str, clients: int, user: str, ca_file: Path | None = None) -> None:
        args = [url, str(clients), user, *([str(ca_file)] if ca_file else [])]
        root = Path(__file__).resolve().parents[2]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.flood", *args], stdout=subprocess.PIPE, cwd=root
        )

    def stop(self) -> Counter[str]:
        """Leave at once (requests in flight are abandoned); the answers by status."""
        self._proc.send_signal(signal.SIGTERM)
        out, _ = self._proc.communicate(timeout=30)
        return Counter(json.loads(out or b"{}"))


def main() -> None:
    parser = argparse.ArgumentParser(description="flood URL with wrong passwords until SIGTERM; print the answers")
    parser.add_argument("url")
    parser.add_argument("clients", type=int)
    parser.add_argument("user")
    parser.add_argument("ca_file", nargs="?")
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None

    async def run() -> Counter[str]:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        return await password_flood(args.url, args.clients, stop, args.user, context)

    print(json.dumps(asyncio.run(run())), flush=True)


if __name__ == "__main__":
    main()
