"""The `mig-exporter` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from aiohttp import web

from exporter import __version__
from exporter.cli import history as history_cli
from exporter.cli import plan as plan_cli
from exporter.cli import report as report_command
from exporter.cli.settings import OPTIONS, ConfigError, Settings, resolve
from exporter.exposition.dcgm import builders_for
from exporter.exposition.native import Exposition, native_families, pod_families, with_pod_labels
from exporter.http.server import build_app, handler_options
from exporter.http.webconfig import WebConfigError, WebConfigWatcher
from exporter.kubernetes.refresher import PodAttributionRefresher
from exporter.sampler import Sampler
from exporter.sources import SourceOptions, open_source
from exporter.sources.base import SourceUnavailableError

log = logging.getLogger("exporter")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised, printed by main) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mig-exporter", description="Per-slice activity and memory of MIG GPUs for Prometheus.")
    parser.add_argument("--version", action="version", version=f"mig-exporter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser("serve", help="run the exporter daemon")
    for option in OPTIONS:
        switch: dict[str, Any] = {"nargs": "?", "const": "true"} if option.switch else {}
        serve.add_argument(
            option.flag,
            dest=option.key,
            default=None,
            metavar=option.metavar,
            help=f"{option.help} (env {option.env}; default {option.default})",
            **switch,
        )
    serve.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML file of settings keyed like the flags (env MIG_EXPORTER_CONFIG)",
    )
    plan_cli.add_parser(commands)
    report_command.add_parser(commands)
    history_cli.add_parser(commands)
    return parser


def _exposition(names: str, attribution: PodAttributionRefresher | None, pod_labels: bool) -> Exposition:
    """The families to render for `--names`, plus pod attribution when a kubelet socket is set."""
    builders = list(builders_for(names))
    if attribution is not None:
        if pod_labels:
            builders = [with_pod_labels(b, attribution) if b is native_families else b for b in builders]
        builders.append(pod_families(attribution))
    return Exposition(builders)


def serve(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
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
    app = build_app(
        sampler, _exposition(settings.names, refresher, settings.pod_labels), refresher, web_config=web_config
    )
    if web_config is not None:
        app.on_startup.append(_reload_on_sighup(web_config))
    scheme = "https" if web_config is not None and web_config.tls_enabled else "http"
    log.info("mig-exporter %s serving %s source on %s://%s", __version__, source.name, scheme, settings.listen)
    try:
        web.run_app(
            app,
            host=settings.listen.host,
            port=settings.listen.port,
            print=None,
            access_log=None,
            shutdown_timeout=5,
            ssl_context=web_config.server_ssl_context() if web_config is not None else None,
            **handler_options(settings.http_idle_timeout),
        )
    except OSError as exc:
        print(f"mig-exporter: error: cannot listen on {settings.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _reload_on_sighup(watcher: WebConfigWatcher) -> Callable[[web.Application], Awaitable[None]]:
    """An on_startup hook: SIGHUP re-reads the web-config (and its certificate files) at once."""

    async def install(app: web.Application) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, watcher.reload)

    return install


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            return serve(resolve(vars(args)))
        if args.command == "plan":
            return plan_cli.run(args)
        if args.command == "report":
            return report_command.run(args)
        if args.command == "simulate-history":
            return history_cli.run(args)
    except (ConfigError, SourceUnavailableError, WebConfigError) as exc:
        print(f"mig-exporter: error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
