"""The HTTP face: /metrics serves pre-rendered bytes, plus /, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BasicAuth, hdrs, web
from aiohttp.typedefs import Handler, Middleware

from exporter import __version__
from exporter.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exposition, wants_openmetrics
from exporter.model import Entity, Field, Snapshot
from exporter.sampler import Sampler
from exporter.webconfig import WebConfigWatcher

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


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _fmt_bytes(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**30:.1f} GiB"


def landing_html(snapshot: Snapshot | None, source: str) -> str:
    """A plain page: version, source and the node's MIG layout with live activity and memory."""
    rows = []
    if snapshot is not None:
        for gpu in snapshot.topology.gpus:
            sample = snapshot.samples.get(gpu.index)
            state = "stale" if gpu.index in snapshot.stale_gpus else ""
            rows.append(
                f"<tr class='gpu {state}'><th colspan=5>GPU {gpu.index} · {html.escape(gpu.model)} · "
                f"MIG {html.escape(gpu.mig_mode)} {state}</th></tr>"
            )
            targets = [
                (Entity(gpu.index, i.gi), f"GI {i.gi}", i.profile, f"{i.placement_start}+{i.placement_size}")
                for i in gpu.instances
            ] or [(Entity(gpu.index), "whole GPU", "-", "-")]
            for entity, name, profile, placement in targets:
                act = sample.get(entity, Field.GR_ENGINE_ACTIVE) if sample else None
                mem = sample.get(entity, Field.MEMORY_USED) if sample else None
                idle = " class='idle'" if act is not None and act < 0.01 else ""
                rows.append(
                    f"<tr{idle}><td>{name}</td><td>{html.escape(profile)}</td><td>{placement}</td>"
                    f"<td>{_fmt_ratio(act)}</td><td>{_fmt_bytes(mem)}</td></tr>"
                )
    table = "\n".join(rows) or "<tr><td colspan=5>no sample yet</td></tr>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mig-exporter</title>
<meta http-equiv="refresh" content="10">
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}
tr.idle td{{color:#b00}}tr.gpu th{{background:#eee}}</style></head>
<body><h1>mig-exporter {html.escape(__version__)}</h1>
<p>Source: <b>{html.escape(source)}</b> · <a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> ·
<a href="/readyz">/readyz</a></p>
<table><tr><th>instance</th><th>profile</th><th>placement (memory slices)</th><th>gr engine active</th>
<th>memory used</th></tr>
{table}
</table></body></html>
"""


async def index(request: web.Request) -> web.Response:
    sampler = request.app[SAMPLER]
    return web.Response(text=landing_html(sampler.snapshot, sampler.source.name), content_type="text/html")


async def _sampling_loop(app: web.Application) -> AsyncIterator[None]:
    """Take the first sample before serving, run the loop for the app's life, then clean up."""
    sampler = app[SAMPLER]
    await sampler.run_once()
    task = asyncio.create_task(sampler.run(), name="sampler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await sampler.close()


# Paths served without basic auth: a liveness probe must work without credentials, and "ok" discloses nothing.
OPEN_PATHS = frozenset({"/healthz"})


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="401 Unauthorized\n",
        headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="mig-exporter", charset="UTF-8"'},
    )


def web_config_middleware(watcher: WebConfigWatcher) -> Middleware:
    """Basic auth and the extra response headers of the web-config in force at each request."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        config = watcher.current()
        try:
            if config.users and request.path not in OPEN_PATHS and not await _authorized(watcher, request):
                response: web.StreamResponse = _unauthorized()
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(config.headers)
            raise
        response.headers.update(config.headers)
        return response

    return middleware


async def _authorized(watcher: WebConfigWatcher, request: web.Request) -> bool:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return False
    try:
        credentials = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:
        return False
    return await watcher.auth.check(watcher.config.users, credentials.login, credentials.password)


# aiohttp request-handler limits: request line and each header at most 8 KiB, at most 64 headers (431/400
# beyond), and a connection that sends no complete request for `idle_timeout` seconds is closed, which
# also bounds how long a client may take to send its headers.
def handler_options(idle_timeout: float) -> dict[str, Any]:
    """Keyword arguments for aiohttp's request handler (web.run_app / AppRunner)."""
    return {
        "max_line_size": 8190,
        "max_field_size": 8190,
        "max_headers": 64,
        "keepalive_timeout": idle_timeout,
        "lingering_time": 1.0,
    }


def build_app(
    sampler: Sampler, exposition: Exposition | None = None, web_config: WebConfigWatcher | None = None
) -> web.Application:
    """The aiohttp application around a sampler; the sampler starts and stops with it."""
    exposition = exposition or Exposition()
    sampler.subscribers.append(exposition.update)
    middlewares = [web_config_middleware(web_config)] if web_config is not None else []
    app = web.Application(client_max_size=1024, middlewares=middlewares)
    app[SAMPLER] = sampler
    app[EXPOSITION] = exposition
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.cleanup_ctx.append(_sampling_loop)
    return app
