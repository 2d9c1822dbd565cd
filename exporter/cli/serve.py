"""`mig-exporter serve`: the exporter daemon, from its settings to a running aiohttp server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

from exporter import __version__
from exporter.cli.settings import OPTIONS, Settings, add_option_flags, unknown_variables
from exporter.exposition.dcgm import builders_for
from exporter.exposition.native import native_families
from exporter.exposition.pods import pod_families, with_pod_labels
from exporter.exposition.render import Exposition
from exporter.http.server import build_app, handler_options
from exporter.http.webconfig import WebConfigWatcher
from exporter.sampler import Sampler
from exporter.sources import SourceOptions, open_source

if TYPE_CHECKING:
    from exporter.kubernetes.refresher import PodAttributionRefresher

log = logging.getLogger("exporter")

P = TypeVar("P", bound=argparse.ArgumentParser)


def add_parser(commands: argparse._SubParsersAction[P]) -> None:
    """Add the `serve` subcommand: one flag per entry of OPTIONS, plus --config."""
    serve = commands.add_parser("serve", help="run the exporter daemon")
    add_option_flags(serve, OPTIONS)


def _exposition(names: str, attribution: PodAttributionRefresher | None, pod_labels: bool) -> Exposition:
    """The families to render for `--names`, plus pod attribution when a kubelet socket is set."""
    builders = list(builders_for(names))
    if attribution is not None:
        if pod_labels:
            builders = [with_pod_labels(b, attribution) if b is native_families else b for b in builders]
        builders.append(pod_families(attribution))
    return Exposition(builders)


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; 0 on a clean stop, 1 when the address cannot be bound."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for warning in unknown_variables(os.environ):
        log.warning("%s", warning)
    web_config = WebConfigWatcher(settings.web_config) if settings.web_config else None
    options = SourceOptions(
        scenario=settings.scenario,
        dcgm_bindings=settings.dcgm_bindings,
        dcgm_host=settings.dcgm_host,
        interval=settings.interval,
    )
    source = open_source(settings.source, options)
    sampler = Sampler(
        source,
        interval=settings.interval,
        discovery_interval=settings.discovery_interval,
        deadline=settings.deadline,
    )
    refresher = _pod_attribution(settings) if settings.kubelet_socket else None
    app = build_app(
        sampler, _exposition(settings.names, refresher, settings.pod_labels), refresher, web_config=web_config
    )
    if web_config is not None:
        app.on_startup.append(_reload_on_sighup(web_config))
    scheme = "https" if web_config is not None and web_config.tls_enabled else "http"

    def serving(*_: object) -> None:  # aiohttp calls this once the socket is bound and the first sample taken
        log.info("mig-exporter %s serving %s source on %s://%s", __version__, source.name, scheme, settings.listen)

    try:
        web.run_app(
            app,
            host=settings.listen.host,
            port=settings.listen.port,
            print=serving,
            access_log=None,
            shutdown_timeout=5,
            ssl_context=web_config.server_ssl_context() if web_config is not None else None,
            **handler_options(settings.http_idle_timeout),
        )
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's strerror repeats the address
        print(f"mig-exporter: error: cannot listen on {settings.listen}: {reason}", file=sys.stderr)
        return 1
    return 0


def _pod_attribution(settings: Settings) -> PodAttributionRefresher | None:
    """The kubelet refresher; None, after one warning, where its gRPC client cannot be imported.

    grpcio and protobuf older than the generated client (or missing) must not stop the exporter: it
    then serves everything but pod attribution.
    """
    try:
        from exporter.kubernetes.refresher import PodAttributionRefresher
    except Exception as exc:  # ImportError, or the generated code refusing an older protobuf or grpcio
        log.warning("pod attribution is off: its gRPC client cannot be loaded (%s: %s)", type(exc).__name__, exc)
        return None
    return PodAttributionRefresher(settings.kubelet_socket, interval=settings.kubelet_interval)


def _reload_on_sighup(watcher: WebConfigWatcher) -> Callable[[web.Application], Awaitable[None]]:
    """An on_startup hook: SIGHUP re-reads the web-config (and its certificate files) at once."""

    async def install(app: web.Application) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, watcher.reload)

    return install
