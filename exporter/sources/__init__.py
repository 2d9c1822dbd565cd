"""GPU backends behind one protocol, selected by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporter.contract import defaults
from exporter.sources.base import Source, SourceUnavailableError


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """What the CLI passes to a source factory."""

    scenario: str = "demo"
    dcgm_bindings: str | None = None
    dcgm_host: str = defaults.DCGM_HOST
    interval: float = defaults.INTERVAL_SECONDS  # seconds between samples: DCGM watches update at this rate


def _synthetic(options: SourceOptions) -> Source:
    from exporter.sources.synthetic.scenario import ScenarioError, load
    from exporter.sources.synthetic.simulator import Simulator
    from exporter.sources.synthetic.source import SyntheticSource

    try:
        return SyntheticSource(Simulator(load(options.scenario)))
    except ScenarioError as exc:
        raise SourceUnavailableError(str(exc)) from None


def _dcgm(options: SourceOptions) -> Source:
    from exporter.sources.dcgm.source import open_dcgm

    return open_dcgm(options.dcgm_bindings, options.dcgm_host, options.interval)


def _nvml(options: SourceOptions) -> Source:
    from exporter.sources.nvml import NvmlSource, load_pynvml

    return NvmlSource(load_pynvml())


FACTORIES: dict[str, Callable[[SourceOptions], Source]] = {
    "dcgm": _dcgm,
    "nvml": _nvml,
    "synthetic": _synthetic,
}

# `auto` tries these in order; the first that loads wins.
AUTO_ORDER: tuple[str, ...] = ("dcgm", "nvml")


def open_source(name: str, options: SourceOptions) -> Source:
    """The source called `name` (`auto` or a key of FACTORIES); raises SourceUnavailableError with a one-line reason."""
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            try:
                return FACTORIES[candidate](options)
            except SourceUnavailableError as exc:
                reasons.append(f"{candidate}: {exc}")
        raise SourceUnavailableError(
            f"no GPU source could be opened ({'; '.join(reasons)}); use --source synthetic to run on simulated GPUs"
        )
    return FACTORIES[name](options)
