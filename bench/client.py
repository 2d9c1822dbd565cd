"""A lean HTTP/1.1 scrape client for the benchmark: keep-alive where the server allows it, timed per scrape.

It sends what Prometheus sends (OpenMetrics preferred, gzip accepted) and reads each response whole.
A server that closes the connection after each response (as prometheus-client's does) gets a new
connection per scrape, as Prometheus would open one; the connect time then counts in the latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, one per completed scrape
    errors: int = 0
    elapsed: float = 0.0
    body_bytes: int = 0


class _Connection:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: {PROMETHEUS_ACCEPT}\r\n"
            "Accept-Encoding: gzip\r\nUser-Agent: bench\r\n\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def scrape(self) -> int:
        """One scrape; the body size. Raises on any error."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if " 200 " not in lines[0] + " ":
            raise RuntimeError(lines[0])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        close = headers.get("connection", "").lower() == "close" or lines[0].startswith("HTTP/1.0")
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:
            body = await self.reader.read()
            close = True
        if close:
            await self.close()
        return len(body)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _run(host: str, port: int, concurrency: int, count: int | None, duration: float | None) -> Result:
    result = Result()
    remaining = [count if count is not None else 1 << 62]
    stop_at = time.perf_counter() + duration if duration is not None else float("inf")

    async def worker() -> None:
        conn = _Connection(host, port, "/metrics")
        try:
            while remaining[0] > 0 and time.perf_counter() < stop_at:
                remaining[0] -= 1
                await _timed(conn, result)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


def scrape(host: str, port: int, concurrency: int, count: int | None = None, duration: float | None = None) -> Result:
    """Scrape with `concurrency` connections until `count` scrapes are done or `duration` seconds pass."""
    return asyncio.run(_run(host, port, concurrency, count, duration))


async def _timed(conn: _Connection, result: Result) -> None:
    started = time.perf_counter()
    try:
        result.body_bytes = await conn.scrape()
    except (OSError, RuntimeError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        result.errors += 1
        await conn.close()
        return
    result.latencies.append(time.perf_counter() - started)


async def _spaced(ports: list[int], count: int, spacing: tuple[float, float], seed: int) -> list[Result]:
    conns = [_Connection("127.0.0.1", port, "/metrics") for port in ports]
    results = [Result() for _ in ports]
    rng = random.Random(seed)
    started = time.perf_counter()
    try:
        for _ in range(count):
            for conn, result in zip(conns, results, strict=True):
                # Each scrape comes after a pause of its own, so that no target is always the first
                # after the client's sleep (a cold client and CPU) or always right behind a slow one.
                await asyncio.sleep(rng.uniform(*spacing) / len(conns))
                await _timed(conn, result)
    finally:
        for conn in conns:
            await conn.close()
    for result in results:
        result.elapsed = time.perf_counter() - started
    return results


def scrape_spaced(ports: list[int], count: int, spacing: tuple[float, float], seed: int = 1) -> list[Result]:
    """Scrape each port `count` times, one after the other, a random `spacing` (seconds) apart, as Prometheus.

    With a spacing longer than the sampling interval, every scrape is the first one of a new sample,
    at a random moment of the sampling cycle. The targets take turns, each scrape after a pause of
    `spacing` / len(ports), so every target is treated alike. Each keeps one connection where it allows.
    """
    return asyncio.run(_spaced(ports, count, spacing, seed))


async def _probe(ports: list[int], path: str, every: float, duration: float) -> list[Result]:
    conns = [_Connection("127.0.0.1", port, path) for port in ports]
    results = [Result() for _ in ports]
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < duration:
            for conn, result in zip(conns, results, strict=True):
                await _timed(conn, result)
                await asyncio.sleep(every / len(conns))
    finally:
        for conn in conns:
            await conn.close()
    for result in results:
        result.elapsed = time.perf_counter() - started
    return results


def probe(ports: list[int], path: str, every: float, duration: float) -> list[Result]:
    """GET `path` on each port in turn, each every `every` seconds, for `duration` seconds.

    /healthz probed every 20 ms across many sampling cycles shows whether anything the exporter does
    (sampling, rendering) holds up its event loop.
    """
    return asyncio.run(_probe(ports, path, every, duration))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
