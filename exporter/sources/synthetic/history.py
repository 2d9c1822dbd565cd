"""A scenario's past as OpenMetrics with timestamps, for `promtool tsdb create-blocks-from openmetrics`.

Backfilling a real Prometheus with weeks of simulated history gives the capacity report,
demos and tests data in seconds. The series carry the names and labels the exporter
exposes (plus the `instance` and `job` labels a scrape adds); values come from the
simulator, so a test knows the truth of every sample. One sample per step stands for the
SCRAPE_INTERVAL scrapes of that step: an activity ratio is their mean (a 300 s burst
pattern at a 5m step averages to its duty cycle, as a 15 s scrape would show), a level
(memory) is read at the step's end. Series whose workload does not vary in time are
evaluated once; the others once per scrape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TextIO

from exporter.contract import defaults
from exporter.contract import families as fam
from exporter.model import Field
from exporter.sources.synthetic.patterns import Idle, Pattern, Steady
from exporter.sources.synthetic.simulator import Simulator

JOB = defaults.JOB
SCRAPE_INTERVAL = 15.0  # seconds: the scrapes a history sample stands for


def scrape_offsets(step: float) -> list[float]:
    """Offsets before a sample's time of the scrapes it stands for: the step's last one is the sample itself."""
    count = max(1, round(step / SCRAPE_INTERVAL))
    return [-step + (k + 1) * step / count for k in range(count)]


@dataclass(frozen=True, slots=True)
class Node:
    """One simulated node and the `instance` label its samples carry."""

    instance: str
    simulator: Simulator


Values = Callable[[Sequence[float], Sequence[float]], list[float]]  # (sample times, scrape offsets) -> values


@dataclass(frozen=True, slots=True)
class _Series:
    family: str
    labels: tuple[tuple[str, str], ...]
    values: Values


def _constant(value: float) -> Values:
    return lambda times, _: [value] * len(times)


def _level(fn: Callable[[float], float], constant: bool) -> Values:
    """A level (memory): read at each sample's time, or once when the workload behind it does not vary."""
    if constant:
        return lambda times, _: [fn(times[0])] * len(times) if times else []
    return lambda times, _: [fn(t) for t in times]


def _ratio(fn: Callable[[float], float], constant: bool) -> Values:
    """A ratio (activity): the mean over the scrapes each sample stands for, or one value when it does not vary."""
    if constant:
        return lambda times, _: [fn(times[0])] * len(times) if times else []

    def mean(times: Sequence[float], offsets: Sequence[float]) -> list[float]:
        return [math.fsum(fn(t + o) for o in offsets) / len(offsets) for t in times]

    return mean


def _is_constant(pattern: Pattern) -> bool:
    return isinstance(pattern, Idle | Steady) and not pattern.noise


def _gpu_memory(sim: Simulator, gpu: int, t: float) -> float:
    return float(sim.gpu_memory_used(gpu, t))


def _gpu_busy(sim: Simulator, gpu: int, t: float) -> float:
    return sim.gpu_activity(gpu, t)[Field.GR_ENGINE_ACTIVE]


def _gi_busy(sim: Simulator, gpu: int, gi: int, t: float) -> float:
    return sim.gi_activity(gpu, gi, t)[Field.GR_ENGINE_ACTIVE]


def _gi_memory(sim: Simulator, gpu: int, gi: int, t: float) -> float:
    return float(sim.gi_memory_used(gpu, gi, t))


def _ci_busy(sim: Simulator, gpu: int, gi: int, ci: int, t: float) -> float:
    return sim.ci_activity(gpu, gi, ci, t)[Field.GR_ENGINE_ACTIVE]


def _node_series(node: Node) -> Iterator[_Series]:
    """Every series one node's exporter would expose for the families the report and dashboards read."""
    sim = node.simulator
    base = (("instance", node.instance), ("job", JOB))
    for index, gpu in enumerate(sim.topology().gpus):
        spec = sim.scenario.gpus[index]
        gpu_labels = (*base, ("gpu", str(gpu.index)), ("uuid", gpu.uuid))
        info = (("model", gpu.model), ("driver_version", gpu.driver_version), ("mig_mode", gpu.mig_mode))
        yield _Series(fam.GPU_INFO.series, (*gpu_labels, *info), _constant(1.0))
        yield _Series(fam.GPU_MEMORY_TOTAL.series, gpu_labels, _constant(float(gpu.memory_total_bytes)))
        gpu_constant = _is_constant(spec.memory) and all(_is_constant(i.memory) for i in spec.instances)
        yield _Series(
            fam.GPU_MEMORY_USED.series,
            gpu_labels,
            _level(partial(_gpu_memory, sim, index), gpu_constant),
        )
        if not gpu.mig_enabled:
            yield _Series(
                fam.GPU_ACTIVITY[Field.GR_ENGINE_ACTIVE].series,
                gpu_labels,
                _ratio(partial(_gpu_busy, sim, index), _is_constant(spec.activity)),
            )
        for inst, inst_spec in zip(gpu.instances, spec.instances, strict=True):
            key = (*base, ("gpu", str(gpu.index)), ("gi", str(inst.gi)), ("profile", inst.profile))
            placement = (
                ("placement_start", str(inst.placement_start)),
                ("placement_size", str(inst.placement_size)),
            )
            identity = (*base, ("gpu", str(gpu.index)), ("uuid", gpu.uuid), ("gi", str(inst.gi)))
            yield _Series(fam.INSTANCE_INFO.series, (*identity, ("profile", inst.profile), *placement), _constant(1.0))
            yield _Series(fam.INSTANCE_COMPUTE_SLICES.series, key, _constant(float(inst.compute_slices)))
            yield _Series(fam.INSTANCE_MEMORY_SLICES.series, key, _constant(float(inst.memory_slices)))
            busy_constant = all(_is_constant(c.activity) for c in inst_spec.compute_instances)
            yield _Series(
                fam.INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE].series,
                key,
                _ratio(partial(_gi_busy, sim, index, inst.gi), busy_constant),
            )
            yield _Series(
                fam.INSTANCE_MEMORY_USED.series,
                key,
                _level(partial(_gi_memory, sim, index, inst.gi), _is_constant(inst_spec.memory)),
            )
            yield _Series(fam.INSTANCE_MEMORY_TOTAL.series, key, _constant(float(inst.memory_total_bytes)))
            for ci, ci_spec in zip(inst.compute_instances, inst_spec.compute_instances, strict=True):
                ci_key = (*base, ("gpu", str(gpu.index)), ("gi", str(inst.gi)), ("ci", str(ci.ci)))
                yield _Series(
                    fam.COMPUTE_INSTANCE_INFO.series,
                    (*ci_key, ("profile", inst.profile), ("ci_profile", ci.profile), ("mig_uuid", ci.mig_uuid)),
                    _constant(1.0),
                )
                yield _Series(
                    fam.COMPUTE_INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE].series,
                    (*ci_key, ("profile", inst.profile)),
                    _ratio(partial(_ci_busy, sim, index, inst.gi, ci.ci), _is_constant(ci_spec.activity)),
                )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_time(t: float) -> str:
    return str(int(t)) if t == int(t) else repr(t)


def sample_times(start: float, end: float, step: float) -> list[float]:
    """The scrape times of a window: start, start + step, ... up to and including end."""
    if step <= 0 or end < start:
        raise ValueError("a history needs step > 0 and end >= start")
    count = math.floor((end - start) / step + 1e-9) + 1
    return [start + k * step for k in range(count)]


def write_openmetrics(nodes: Sequence[Node], times: Sequence[float], out: TextIO) -> int:
    """Write every node's series at `times` as OpenMetrics (families contiguous, then `# EOF`); return the count.

    `times` is a step grid (see sample_times); each sample stands for the scrapes of the step up to it.
    """
    offsets = scrape_offsets(times[1] - times[0]) if len(times) > 1 else [0.0]
    by_family: dict[str, list[_Series]] = {}
    for node in nodes:
        for series in _node_series(node):
            by_family.setdefault(series.family, []).append(series)
    stamps = [_format_time(t) for t in times]
    written = 0
    for family, members in by_family.items():
        out.write(f"# TYPE {family} gauge\n")
        for series in members:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in series.labels)
            prefix = f"{family}{{{labels}}} "
            values = series.values(times, offsets)
            out.write("".join(f"{prefix}{v!r} {ts}\n" for v, ts in zip(values, stamps, strict=True)))
            written += len(values)
    out.write("# EOF\n")
    return written
