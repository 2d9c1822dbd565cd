"""`mig-exporter healthcheck`: exit 0 when the exporter on this host answers /healthz (the image's HEALTHCHECK).

It reads the address and the web-config the way `serve` does (flags, MIG_EXPORTER_* variables, --config),
so a container started with MIG_EXPORTER_LISTEN or TLS is probed where and how it serves. A wildcard
listen address is probed on loopback. Over TLS the certificate is not verified: this asks whether the
process answers, not who it is (and with client certificates required it cannot connect; probe from
the orchestrator then).
"""

from __future__ import annotations

import argparse
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

from exporter.cli.settings import ConfigError, Settings, positive_seconds, resolve
from exporter.http.webconfig import load

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def add_parser(commands: Any) -> None:
    """Add the `healthcheck` subcommand."""
    check = commands.add_parser("healthcheck", help="exit 0 when the local exporter answers /healthz")
    check.add_argument("--listen", default=None, metavar="HOST:PORT", help="where serve listens (as serve's flag)")
    check.add_argument("--web-config", dest="web_config", default=None, metavar="FILE", help="serve's web-config")
    check.add_argument("--config", default=None, metavar="FILE", help="serve's YAML settings file")
    check.add_argument("--timeout", default="3", metavar="SECONDS", help="how long to wait for the answer (3)")


def url_for(settings: Settings) -> tuple[str, ssl.SSLContext | None]:
    """The /healthz URL of a `serve` with these settings, and the TLS context to reach it with."""
    host = _WILDCARDS.get(settings.listen.host, settings.listen.host)
    tls = settings.web_config is not None and load(settings.web_config).tls is not None
    netloc = f"[{host}]:{settings.listen.port}" if ":" in host else f"{host}:{settings.listen.port}"
    if not tls:
        return f"http://{netloc}/healthz", None
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # liveness, not identity (see above)
    return f"https://{netloc}/healthz", context


def run(args: argparse.Namespace) -> int:
    """0 when /healthz answers 200, 1 (with one line saying why) when it does not."""
    try:
        timeout = positive_seconds(args.timeout)
    except ValueError as exc:
        raise ConfigError(f"--timeout: invalid value {args.timeout!r}: {exc}") from None
    url, context = url_for(resolve({"listen": args.listen, "web_config": args.web_config, "config": args.config}))
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"mig-exporter: healthcheck: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"mig-exporter: healthcheck: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0
