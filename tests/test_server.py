"""HTTP endpoints through aiohttp's test client: negotiation, gzip, health, readiness, landing page."""

from __future__ import annotations

import gzip
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from exporter.http.server import build_app
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
