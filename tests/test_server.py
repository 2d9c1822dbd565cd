"""HTTP endpoints through aiohttp's test client: negotiation, gzip, health, readiness, landing page."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable, Generator, Iterable

import pytest
from aiohttp.test_utils import TestClient

from exporter.exposition.publish import Exposition
from exporter.exposition.render import Renderer
from exporter.exposition.series import Builder
from exporter.exposition.template import Format
from exporter.http.server import build_app, gzip_wanted
from exporter.model import Snapshot
from exporter.sampler import Sampler
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


@pytest.fixture
async def client(aiohttp_client: ClientFactory, dgx: Simulator) -> TestClient:  # type: ignore[type-arg]
    sampler = Sampler(SyntheticSource(dgx), interval=0.2)
    return await aiohttp_client(build_app(sampler))


async def test_metrics_text_by_default(client: TestClient) -> None:  # type: ignore[type-arg]
    """A plain scrape gets the Prometheus text format with the instance series."""
    response = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    body = await response.text()
    assert "mig_instance_gr_engine_active_ratio{" in body


async def test_metrics_openmetrics_when_asked(client: TestClient) -> None:  # type: ignore[type-arg]
    """Prometheus' OpenMetrics Accept header gets OpenMetrics."""
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert (await response.text()).endswith("# EOF\n")


async def test_metrics_gzip_when_asked(client: TestClient) -> None:  # type: ignore[type-arg]
    """Accept-Encoding: gzip gets a gzip body that decodes to the exposition."""
    response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert b"mig_gpu_info" in gzip.decompress(await response.read())


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=1.0, identity;q=0", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("identity", False),
        ("", False),
        ("x-gzip-not", False),
    ],
)
def test_gzip_negotiation(accept_encoding: str, expected: bool) -> None:
    """gzip where Accept-Encoding lists it, except with q=0, which means not acceptable."""
    assert gzip_wanted(accept_encoding) is expected


async def test_gzip_refused_with_q_zero(client: TestClient) -> None:  # type: ignore[type-arg]
    """Accept-Encoding: gzip;q=0 gets an uncompressed body."""
    response = await client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0"}, auto_decompress=False)
    assert "Content-Encoding" not in response.headers
    assert b"mig_gpu_info" in await response.read()


async def test_a_scrape_never_renders(
    aiohttp_client: ClientFactory, dgx: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every render happens in the background task, at most once per sample and variant, never in a scrape."""
    tasks: list[str] = []
    original = Renderer.steps

    def spy(
        self: Renderer, snapshot: Snapshot, formats: Iterable[Format]
    ) -> Generator[None, None, dict[Format, bytes]]:
        task = asyncio.current_task()
        tasks.append(task.get_name() if task is not None else "")
        return original(self, snapshot, formats)

    monkeypatch.setattr(Renderer, "steps", spy)
    sampler = Sampler(SyntheticSource(dgx), interval=0.05)
    samples: list[Snapshot] = []
    sampler.subscribers.append(samples.append)
    client = await aiohttp_client(build_app(sampler))
    variants = [
        {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"},
        {"Accept": "text/plain", "Accept-Encoding": "gzip"},
        {"Accept": "text/plain", "Accept-Encoding": "identity"},
    ]
    scrapes = 0
    for _ in range(10):
        for headers in variants:
            for _ in range(5):
                response = await client.get("/metrics", headers=headers)
                assert response.status == 200 and b"mig_gpu_info" in await response.read()
                scrapes += 1
        await asyncio.sleep(0.02)
    assert tasks and set(tasks) == {"exposition"}
    assert len(tasks) <= len(samples) + len(variants) < scrapes


async def test_health_and_readiness(client: TestClient) -> None:  # type: ignore[type-arg]
    """healthz is always ok; readyz is ok once a fresh snapshot exists."""
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200


async def test_readyz_fails_when_snapshot_is_old(aiohttp_client: ClientFactory, dgx: Simulator) -> None:
    """A snapshot older than three intervals plus the deadline makes readyz 503, naming the age."""
    sampler = Sampler(SyntheticSource(dgx), interval=60, clock=lambda: time.time() - 3600)
    client = await aiohttp_client(build_app(sampler))
    response = await client.get("/readyz")
    assert response.status == 503
    assert "last sample is 3600" in await response.text()


async def test_readyz_fails_while_the_latest_sample_cannot_be_rendered(
    aiohttp_client: ClientFactory, dgx: Simulator
) -> None:
    """A fresh sample that the exposition cannot render makes readyz 503 with the reason, not "ready"."""

    def broken(snapshot: Snapshot) -> Iterable[object]:
        raise RuntimeError("broken builder")

    exposition = Exposition([Builder(broken)])  # type: ignore[arg-type]
    client = await aiohttp_client(build_app(Sampler(SyntheticSource(dgx), interval=60), exposition))
    assert (await client.get("/metrics")).status == 503
    response = await client.get("/readyz")
    assert response.status == 503
    assert "rendering the latest sample failed" in await response.text()


async def test_landing_page_shows_layout(client: TestClient) -> None:  # type: ignore[type-arg]
    """The landing page names the version, the source and every GPU instance's profile."""
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert "mig-exporter" in page and "synthetic" in page
    assert page.count("3g.40gb") >= 4 and "7g.80gb" in page


async def test_unknown_path_and_wrong_method_are_4xx(client: TestClient) -> None:  # type: ignore[type-arg]
    """Unknown paths are 404 and POST to /metrics is 405."""
    assert (await client.get("/nope")).status == 404
    assert (await client.post("/metrics", data=b"x")).status == 405
