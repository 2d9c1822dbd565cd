"""Load held: 64 concurrent scrapers against the real daemon, no errors, no memory growth."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.processes import ExporterProcess, http_get

PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096


async def hammer(url: str, scrapers: int, seconds: float, max_scrapes: int) -> tuple[int, list[str]]:
    """`scrapers` keep-alive connections scraping back to back until `seconds` pass or `max_scrapes` are done."""
    done = 0
    errors: list[str] = []
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=scrapers)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:

        async def scraper() -> None:
            nonlocal done
            while time.monotonic() < stop_at and done < max_scrapes:
                try:
                    async with session.get(url, headers=PROMETHEUS_HEADERS) as response:
                        body = await response.read()
                        if response.status != 200 or len(body) < 1000:
                            errors.append(f"HTTP {response.status}, {len(body)} bytes")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(repr(exc))
                done += 1

        await asyncio.gather(*(scraper() for _ in range(scrapers)))
    return done, errors


@pytest.mark.slow
@pytest.mark.integration
def test_64_scrapers_for_20_seconds(tmp_path: Path) -> None:
    """64 concurrent scrapers for 20 s (at least 10,000 scrapes): zero errors, RSS grows by under 8 MiB, and
    sampling keeps going throughout."""
    args = ["--source", "synthetic", "--scenario", "dgx-h100", "--interval", "1"]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as exporter:
        assert exporter.proc is not None
        url = exporter.url + "/metrics"
        _, warm_errors = asyncio.run(hammer(url, 64, 10, 2000))  # let allocator pools and caches settle
        assert not warm_errors
        before = rss_bytes(exporter.proc.pid)
        done, errors = asyncio.run(hammer(url, 64, 20, 250_000))
        if done < 10_000:  # a busy machine: keep going until 10,000, within a bound
            more, more_errors = asyncio.run(hammer(url, 64, 60, 10_000 - done))
            done, errors = done + more, errors + more_errors
        after = rss_bytes(exporter.proc.pid)
        assert errors == [], errors[:5]
        assert done >= 10_000
        assert after - before < 8 * 2**20, f"RSS grew {(after - before) / 2**20:.1f} MiB over {done} scrapes"
        assert http_get(exporter.url + "/readyz")[0] == 200  # the sampling loop was not starved
        assert exporter.proc.poll() is None
