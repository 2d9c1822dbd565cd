"""`mig-exporter serve`: the exporter daemon, from its settings to a running aiohttp server.

The server is run here rather than by `web.run_app`, to own what happens around aiohttp: every accepted
connection passes the connection limit (and, for HTTPS, its TLS handshake) first; event-loop errors and
what clients cause are logged as short rate-limited lines; and a stop (SIGTERM, SIGINT) drops pending
password checks, gives requests in progress a second, and waits for no more than the bcrypt checks
already running, so the process exits 0 within about two seconds whatever the load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from typing import TypeVar

from aiohttp import web

from exporter import __version__
from exporter.cli.settings import OPTIONS, Settings, add_option_flags, unknown_variables
from exporter.exposition.dcgm import ALL, DcgmOptions, builders_for
from exporter.exposition.pods import dcgm_holder_key, pod_families, with_pod_labels
from exporter.exposition.publish import Exposition
from exporter.http.connections import LISTEN_BACKLOG, ConnectionLimit, connection_limit
from exporter.http.requestlog import ClientLog, loop_exception_handler
from exporter.http.server import build_app, handler_options
from exporter.http.webconfig import WebConfigWatcher
from exporter.kubernetes.refresher import PodAttributionRefresher
from exporter.sampler import Sampler
from exporter.sources import SourceOptions, open_source

log = logging.getLogger("exporter")

P = TypeVar("P", bound=argparse.ArgumentParser)

SHUTDOWN_GRACE_SECONDS = 1.0  # for requests in progress at a stop; a scrape takes milliseconds
TLS_HANDSHAKE_SECONDS = 10.0


def add_parser(commands: argparse._SubParsersAction[P]) -> None:
    """Add the `serve` subcommand: one flag per entry of OPTIONS, plus --config."""
    serve = commands.add_parser("serve", help="run the exporter daemon")
    add_option_flags(serve, OPTIONS)


def node_name() -> str:
    """The node's name as dcgm-exporter labels it: NODE_NAME (set from the pod spec in Kubernetes), else the host's."""
    return os.environ.get("NODE_NAME") or socket.gethostname()


def _exposition(settings: Settings, attribution: PodAttributionRefresher | None) -> Exposition:
    """The families to render for `--names`, plus pod attribution when a kubelet socket is set.

    With attribution on, dcgm-exporter's names carry namespace, pod and container as it adds them in
    Kubernetes; the native series carry them only with --pod-labels.
    """
    dcgm = DcgmOptions(node_name(), settings.dcgm_hostname_label, settings.collectors or ALL)
    builders = list(builders_for(settings.names, dcgm))
    if attribution is not None:
        if settings.pod_labels:
            builders[0] = with_pod_labels(builders[0], attribution)
        if settings.names == "dcgm":
            builders[-1] = with_pod_labels(builders[-1], attribution, ("DCGM_FI_",), dcgm_holder_key)
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
    refresher = (
        PodAttributionRefresher(settings.kubelet_socket, interval=settings.kubelet_interval)
        if settings.kubelet_socket
        else None
    )
    clients = ClientLog()
    limit = connection_limit(settings.http_max_connections)
    if limit < settings.http_max_connections:
        log.warning(
            "serving at most %d connections, not %d: the open-file limit leaves no more (raise LimitNOFILE)",
            limit,
            settings.http_max_connections,
        )
    connections = ConnectionLimit(limit, clients)
    app = build_app(
        sampler,
        _exposition(settings, refresher),
        refresher,
        web_config=web_config,
        connections=connections,
    )
    app.on_startup.append(_freeze_startup_objects)
    scheme = "https" if web_config is not None and web_config.tls_enabled else "http"
    try:
        asyncio.run(
            _serve(
                app,
                settings,
                web_config=web_config,
                connections=connections,
                clients=clients,
                what=f"{source.name} source on {scheme}",
            )
        )
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's strerror repeats the address
        print(f"mig-exporter: error: cannot listen on {settings.listen}: {reason}", file=sys.stderr)
        return 1
    finally:
        if web_config is not None:
            web_config.auth.join()  # no bcrypt thread may outlive the interpreter: it would abort the process
    return 0


async def _freeze_startup_objects(app: web.Application) -> None:
    """Move everything alive once started (modules, the first sample's topology) out of the collector's view.

    They live as long as the process. Left in, every full collection walks them all: about 20 ms at
    64 GPUs, a stall of the event loop every minute or so. Runs after the first sample (aiohttp runs
    cleanup contexts' start-up first).
    """
    gc.collect()
    gc.freeze()


async def _serve(
    app: web.Application,
    settings: Settings,
    *,
    web_config: WebConfigWatcher | None,
    connections: ConnectionLimit,
    clients: ClientLog,
    what: str,
) -> None:
    """Start the app, listen through the connection limit, and stop in order on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler(clients))
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        **handler_options(settings.http_idle_timeout, clients),
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()  # the first sample, then the background loops
    try:
        if stop.is_set():  # stopped while starting
            return
        assert runner.server is not None
        tls = web_config.ssl_context if web_config is not None and web_config.tls_enabled else None
        listener = await loop.create_server(
            connections.protocol_factory(runner.server, tls, TLS_HANDSHAKE_SECONDS),
            settings.listen.host,
            settings.listen.port,
            backlog=LISTEN_BACKLOG,
        )
        if web_config is not None:
            loop.add_signal_handler(signal.SIGHUP, web_config.request_reload)
        log.info("mig-exporter %s serving %s://%s", __version__, what, settings.listen)
        await stop.wait()
        log.info("stopping")
        listener.close()
    finally:
        await runner.cleanup()  # closes idle connections, drops pending checks, waits a second, stops sampling
        connections.abort_all()
