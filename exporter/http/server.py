"""The HTTP face: /metrics serves pre-rendered bytes, plus /healthz, /readyz and the landing page (landing.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import BasicAuth, hdrs, web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client.exposition import gzip_accepted

from exporter.exposition.dcgm import builders_for
from exporter.exposition.publish import Exposition, Variant
from exporter.exposition.template import Format
from exporter.http.basicauth import AuthBusyError
from exporter.http.connections import ConnectionLimit
from exporter.http.landing import add_routes
from exporter.http.requestlog import ClientLog, RequestHandlerLog
from exporter.http.webconfig import WebConfig, WebConfigWatcher
from exporter.sampler import Sampler

if TYPE_CHECKING:  # the refresher needs grpc, which is imported only where pod attribution is on
    from exporter.kubernetes.refresher import PodAttributionRefresher

log = logging.getLogger(__name__)

SAMPLER = web.AppKey("sampler", Sampler)
EXPOSITION = web.AppKey("exposition", Exposition)


def _stale_after(sampler: Sampler) -> float:
    """Age beyond which the latest snapshot no longer counts as fresh for /readyz."""
    return 3 * sampler.interval + sampler.deadline


def gzip_wanted(accept_encoding: str) -> bool:
    """prometheus-client's `gzip_accepted`, except that `gzip;q=0` refuses gzip (RFC 9110: not acceptable)."""
    return any(gzip_accepted(coding) and not _refused(coding) for coding in accept_encoding.split(","))


def _refused(coding: str) -> bool:
    for param in coding.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value) == 0
            except ValueError:
                return False
    return False


def variant_for(request: web.Request) -> Variant:
    """The format (by prometheus-client's negotiation) and encoding a scrape asks for."""
    return Variant(
        Format.for_accept(request.headers.get(hdrs.ACCEPT, "")),
        gzip_wanted(request.headers.get(hdrs.ACCEPT_ENCODING, "")),
    )


async def metrics(request: web.Request) -> web.Response:
    """The latest snapshot's bytes, made before the scrape came: never a render, never a GPU call."""
    variant = variant_for(request)
    exposition = request.app[EXPOSITION]
    body = await exposition.body(variant)
    if body is None:
        reason = "rendering the latest sample failed (see the log)" if exposition.failing else "no sample yet"
        return web.Response(status=503, text=reason + "\n")
    headers = {hdrs.CONTENT_TYPE: variant.format.content_type, hdrs.VARY: "Accept, Accept-Encoding"}
    if variant.gzip:
        headers[hdrs.CONTENT_ENCODING] = "gzip"
    return web.Response(body=body, headers=headers)


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
    if request.app[EXPOSITION].failing:  # scrapes get 503 or an older sample's bytes: do not look healthy
        return web.Response(status=503, text="not ready: rendering the latest sample failed (see the log)\n")
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


async def _exposition_loop(app: web.Application) -> AsyncIterator[None]:
    """Make each snapshot's bytes in the background for the app's life."""
    async with _background(app[EXPOSITION].run(), "exposition"):
        yield


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


# Paths served without basic auth: a liveness probe must work without credentials, and "ok" discloses nothing.
OPEN_PATHS = frozenset({"/healthz"})


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="401 Unauthorized\n",
        headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="mig-exporter", charset="UTF-8"'},
    )


def _busy() -> web.Response:
    """Too many new credentials wait for a check (a password flood): try again in a second."""
    return web.Response(
        status=503, text="503 Service Unavailable: too many logins to check, retry\n", headers={hdrs.RETRY_AFTER: "1"}
    )


def web_config_middleware(watcher: WebConfigWatcher) -> Middleware:
    """Basic auth and the extra response headers of the web-config in force at each request."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        config = watcher.current()
        try:
            if config.users and request.path not in OPEN_PATHS:
                response = await _authenticated(watcher, config, request, handler)
            else:
                response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(config.headers)
            raise
        response.headers.update(config.headers)
        return response

    return middleware


async def _authenticated(
    watcher: WebConfigWatcher, config: WebConfig, request: web.Request, handler: Handler
) -> web.StreamResponse:
    """The handler's answer for a listed user with the right password; else 401, or 503 in a password flood."""
    try:
        allowed = await _authorized(watcher, config, request)
    except AuthBusyError:
        return _busy()
    return await handler(request) if allowed else _unauthorized()


async def _authorized(watcher: WebConfigWatcher, config: WebConfig, request: web.Request) -> bool:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return False
    try:
        credentials = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:
        return False
    return await watcher.auth.check(config.users, credentials.login, credentials.password)


# aiohttp request-handler limits: request line and each header at most 8 KiB, at most 64 headers (431/400
# beyond), and a connection that sends no complete request for `idle_timeout` seconds is closed, which
# also bounds how long a client may take to send its headers. A handler whose client went away is
# cancelled (so is a password check it waits for), and what the handler logs about clients is one
# rate-limited line (requestlog.py).
def handler_options(idle_timeout: float, clients: ClientLog | None = None) -> dict[str, Any]:
    """Keyword arguments for aiohttp's request handler (web.run_app / AppRunner)."""
    return {
        "max_line_size": 8190,
        "max_field_size": 8190,
        "max_headers": 64,
        "keepalive_timeout": idle_timeout,
        "lingering_time": 1.0,
        "handler_cancellation": True,
        "logger": RequestHandlerLog(clients or ClientLog()),
    }


def build_app(
    sampler: Sampler,
    exposition: Exposition | None = None,
    attribution: PodAttributionRefresher | None = None,
    web_config: WebConfigWatcher | None = None,
    connections: ConnectionLimit | None = None,
) -> web.Application:
    """The aiohttp application around a sampler (and the pod-attribution refresher); they start and stop with it."""
    exposition = exposition or Exposition(builders_for("native"))
    sampler.subscribers.append(exposition.update)
    middlewares = [connections.middleware] if connections is not None else []
    if web_config is not None:
        middlewares.append(web_config_middleware(web_config))
    app = web.Application(client_max_size=1024, middlewares=middlewares)
    app[SAMPLER] = sampler
    app[EXPOSITION] = exposition
    app.router.add_get("/metrics", metrics)
    add_routes(app, sampler, attribution)  # /, /layout.html, /api/layout
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if web_config is not None:
        app.on_shutdown.append(lambda _: web_config.close())
    if attribution is not None:
        app.cleanup_ctx.append(_attribution_loop(attribution))
    app.cleanup_ctx.append(_exposition_loop)
    app.cleanup_ctx.append(_sampling_loop)
    return app
