"""`serve` settings from flags, MIG_EXPORTER_* environment variables and a YAML config file.

Precedence: flag, then environment variable, then config file, then default. Each option
is declared once in OPTIONS; its flag, environment variable and config key derive from it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from exporter import yamlfile
from exporter.contract import defaults
from exporter.excerpt import excerpt
from exporter.exposition.counters import read_counters
from exporter.exposition.dcgm import DcgmSelection
from exporter.sources import FACTORIES as SOURCES

ENV_PREFIX = "MIG_EXPORTER_"


class ConfigError(ValueError):
    """Bad input: the message names the flag, variable or key and the value."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """HOST:PORT, with IPv6 hosts in brackets ([::1]:9401)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:9401")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("put an IPv6 host in brackets, e.g. [::1]:9401")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port {port!r} is not a number 1..65535")
    return Listen(host, int(port))


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0.05 <= seconds <= 3600:
        raise ValueError("must be between 0.05 and 3600 seconds")
    return seconds


def connection_count(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise ValueError("expected a number of connections, 1..1000000")
    return int(value)


class Choice:
    """A parser that accepts one of a fixed set of words; `allowed` is what `--help` lists."""

    def __init__(self, *allowed: str) -> None:
        self.allowed = allowed

    def __call__(self, value: str) -> str:
        if value not in self.allowed:
            raise ValueError(f"expected one of {', '.join(self.allowed)}")
        return value


def parse_dcgm_host(value: str) -> str:
    """`embedded`, or the host engine's HOST:PORT (HOST alone means the host engine's default port)."""
    if value == "embedded":
        return value
    if not value.rpartition(":")[0] or value.endswith("]"):
        value = f"{value}:{defaults.DCGM_PORT}"
    return str(parse_listen(value))


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True, slots=True)
class Option:
    """One `serve` setting: a field of Settings, with its flag, environment variable and config-file key."""

    key: str  # the Settings field and config-file key; the flag is --key with dashes
    parse: Callable[[str], Any]
    default: str | None  # as text, parsed like any other value; None: unset (the help says what applies)
    help: str
    metavar: str | None = None
    switch: bool = False  # a flag given without a value means "true"

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def choices(self) -> tuple[str, ...]:
        return self.parse.allowed if isinstance(self.parse, Choice) else ()


def _option(
    parse: Callable[[str], Any], default: str | None, help: str, metavar: str | None = None, *, switch: bool = False
) -> dict[str, Any]:
    """The metadata that makes a Settings field a `serve` option (the field's name is the option's key)."""
    return {"option": (parse, default, help, metavar, switch)}


def add_option_flags(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """One flag per option (its value resolved later by `resolve`, after the environment and the file), and --config."""
    for option in options:
        switch: dict[str, Any] = {"nargs": "?", "const": "true"} if option.switch else {}
        default = f"; default {option.default}" if option.default else ""
        parser.add_argument(
            option.flag,
            dest=option.key,
            default=None,
            metavar="{" + ",".join(option.choices) + "}" if option.choices else option.metavar,
            help=f"{option.help} (env {option.env}{default})".replace("%", "%%"),
            **switch,
        )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help=f"YAML file of settings keyed like the flags (env {CONFIG_ENV})",
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated `serve` settings. Each field is one option: OPTIONS, the flags and the variables derive from it."""

    source: str = field(
        metadata=_option(Choice("auto", *SOURCES), "auto", "where to read GPUs from: auto tries dcgm, then nvml")
    )
    listen: Listen = field(
        metadata=_option(parse_listen, defaults.LISTEN, "address to serve on ([::1]:9401 for IPv6)", "HOST:PORT")
    )
    interval: float = field(
        metadata=_option(positive_seconds, f"{defaults.INTERVAL_SECONDS:g}", "seconds between samples", "SECONDS")
    )
    discovery_interval: float = field(
        metadata=_option(
            positive_seconds,
            f"{defaults.DISCOVERY_INTERVAL_SECONDS:g}",
            "seconds between MIG layout discoveries (also after any not-found error)",
            "SECONDS",
        )
    )
    deadline: float | None = field(
        metadata=_option(
            positive_seconds,
            None,
            "seconds one GPU's sampling may take before its data is marked stale (default: the interval)",
            "SECONDS",
        )
    )
    scenario: str = field(
        metadata=_option(
            str, "demo", "synthetic source: built-in scenario (demo, dgx-h100) or a YAML file", "NAME|FILE"
        )
    )
    log_level: str = field(metadata=_option(Choice("debug", "info", "warning", "error"), "info", "log verbosity"))
    dcgm_bindings: str | None = field(
        metadata=_option(
            str,
            None,
            "dcgm source: directory of DCGM's Python bindings (default: the DCGM 4, then DCGM 3 install path)",
            "PATH",
        )
    )
    dcgm_host: str = field(
        metadata=_option(
            parse_dcgm_host,
            defaults.DCGM_HOST,
            "dcgm source: HOST:PORT of nv-hostengine, or 'embedded' to start an engine in-process",
            "HOST:PORT|embedded",
        )
    )
    names: str = field(
        metadata=_option(
            Choice("native", "dcgm"),
            "native",
            "metric names: native, or dcgm to also serve dcgm-exporter's names and labels",
        )
    )
    collectors: DcgmSelection | None = field(
        metadata=_option(
            read_counters,
            None,
            "--names dcgm: dcgm-exporter counters CSV (its etc/default-counters.csv format) choosing the dcgm "
            "families to serve (default: every one mig-exporter reads)",
            "FILE",
        )
    )
    dcgm_hostname_label: str = field(
        metadata=_option(
            Choice("Hostname", "hostname"),
            "Hostname",
            "--names dcgm: the label naming the node (dcgm-exporter's newer releases say hostname)",
        )
    )
    kubelet_socket: str = field(
        metadata=_option(
            str,
            defaults.KUBELET_SOCKET,
            "kubelet pod-resources socket for pod attribution; empty turns attribution off",
            "PATH",
        )
    )
    kubelet_interval: float = field(
        metadata=_option(
            positive_seconds,
            f"{defaults.KUBELET_INTERVAL_SECONDS:g}",
            "seconds between kubelet pod-resources List calls",
            "SECONDS",
        )
    )
    pod_labels: bool = field(
        metadata=_option(
            boolean,
            "false",
            "also put namespace, pod and container labels on the series of allocated GPUs and MIG instances",
            "BOOL",
            switch=True,
        )
    )
    web_config: str | None = field(
        metadata=_option(
            str,
            None,
            "exporter-toolkit web-config file (TLS, basic auth, headers); re-read when it changes or on SIGHUP",
            "FILE",
        )
    )
    http_idle_timeout: float = field(
        metadata=_option(
            positive_seconds,
            f"{defaults.HTTP_IDLE_TIMEOUT_SECONDS:g}",
            "seconds a client connection may stay idle, or take to send a request, before it is closed",
            "SECONDS",
        )
    )
    http_max_connections: int = field(
        metadata=_option(
            connection_count,
            str(defaults.HTTP_MAX_CONNECTIONS),
            "client connections at once; beyond, the one idle longest is closed (kept below the open-file limit)",
            "N",
        )
    )


OPTIONS: tuple[Option, ...] = tuple(Option(f.name, *f.metadata["option"]) for f in fields(Settings))
CONFIG_ENV = ENV_PREFIX + "CONFIG"


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each MIG_EXPORTER_* variable that names no setting, with the likeliest one it meant."""
    import difflib  # where a variable is unknown only: a daemon does not carry the module

    known = {o.env for o in OPTIONS} | {CONFIG_ENV}
    warnings = []
    for name in sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known):
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), [k.removeprefix(ENV_PREFIX) for k in known], 1)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else f" (known: {', '.join(sorted(known))})"
        warnings.append(f"environment variable {name} names no setting and is ignored{hint}")
    return warnings


def _load_config_file(path: str) -> dict[str, str]:
    try:
        doc = yamlfile.load(path)
    except yamlfile.YamlError as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings, got {type(doc).__name__}")
    known = {o.key for o in OPTIONS}
    out = {}
    for key, value in doc.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {excerpt(key)} (known: {', '.join(sorted(known))})")
        if isinstance(value, dict | list) or value is None:
            raise ConfigError(f"{path}: {key}: expected a single value, got {excerpt(value)}")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def resolve(flags: Mapping[str, str | None], environ: Mapping[str, str] = os.environ) -> Settings:
    """Merge flags, environment and config file into validated Settings."""
    config_path = flags.get("config") or environ.get(CONFIG_ENV)
    from_file = _load_config_file(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        for origin, raw in (
            (option.flag, flags.get(option.key)),
            (option.env, environ.get(option.env)),
            (f"{config_path}: {option.key}", from_file.get(option.key)),
            (f"default {option.key}", option.default),
        ):
            if raw is not None:
                try:
                    values[option.key] = option.parse(raw)
                except ValueError as exc:
                    raise ConfigError(f"{origin}: invalid value {excerpt(raw)}: {exc}") from None
                break
        else:
            values[option.key] = None
    if values["collectors"] is not None and values["names"] != "dcgm":
        raise ConfigError("collectors: a counters file picks the dcgm-exporter families: add --names dcgm")
    return Settings(**values)
