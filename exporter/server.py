"""The HTTP face: /metrics serves pre-rendered bytes, plus /healthz, /readyz and the landing page (landing.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from exporter.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exposition, wants_openmetrics
from exporter.kubernetes.refresher import PodAttributionRefresher
from exporter.landing import add_routes
from exporter.sampler import Sampler

log = logging.getLogger(__name__)

SAMPLER = web.AppKey("sampler", Sampler)
EXPOSITION = web.AppKey("exposition", Exposition)


def _stale_after(sampler: Sampler) -> float:
    """Age beyond which the latest snapshot no longer counts as fresh for /readyz."""
    return 3 * sampler.interval + sampler.deadline


async def metrics(request: web.Request) -> web.Response:
    rendered = request.app[EXPOSITION].current
    if rendered is None:
        return web.Response(status=503, text="no sample yet\n")
    openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "").lower()
    headers = {
        "Content-Type": OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE,
        "Vary": "Accept, Accept-Encoding",
    }
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=rendered.body(openmetrics, gzipped), headers=headers)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    sampler = request.app[SAMPLER]
    snapshot = sampler.snapshot
    if snapshot is None:
        return web.Response(status=503, text="not ready: no sample yet\n")
    age = time.time() - snapshot.timestamp
    if age > _stale_after(sampler):
        return web.Response(status=503, text=f"not ready: last sample is {age:.1f}s old\n")
    return web.Response(text="ready\n")


@contextlib.asynccontextmanager
async def _background(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `work` as a task while the block runs; cancel and await it on the way out."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sampling_loop(app: web.Application) -> AsyncIterator[None]:
    """Take the first sample before serving, run the loop for the app's life, then clean up."""
    sampler = app[SAMPLER]
    await sampler.run_once()
    async with _background(sampler.run(), "sampler"):
        yield
    await sampler.close()


def _attribution_loop(refresher: PodAttributionRefresher) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run the kubelet refresher in the background for the app's life; serving never waits for it."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with _background(refresher.run(), "pod-attribution"):
            yield
        await refresher.close()

    return context


def build_app(
    sampler: Sampler, exposition: Exposition | None = None, attribution: PodAttributionRefresher | None = None
) -> web.Application:
    """The aiohttp application around a sampler (and the pod-attribution refresher); they start and stop with it."""
    exposition = exposition or Exposition()
    sampler.subscribers.append(exposition.update)
    app = web.Application(client_max_size=1024)
    app[SAMPLER] = sampler
    app[EXPOSITION] = exposition
    app.router.add_get("/metrics", metrics)
    add_routes(app, sampler)  # /, /layout.html, /api/layout
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if attribution is not None:
        app.cleanup_ctx.append(_attribution_loop(attribution))
    app.cleanup_ctx.append(_sampling_loop)
    return app
