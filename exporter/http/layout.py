"""The node's layout as the landing page and /api/layout show it: a typed view of the latest snapshot.

Per GPU its instances with placement, live activity, the 5-minute mean that decides "idle" (the
MigInstanceIdle alert's condition, without its hour), memory, compute instances and, when pod
attribution is on, the containers holding each slice. Nothing here renders HTML.
"""

from __future__ import annotations

import dataclasses
import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter import __version__
from exporter.contract.thresholds import IDLE_MEAN_WINDOW, IDLE_RATIO
from exporter.kubernetes.attribution import AttributionProvider, Holder, holders_with_instances
from exporter.model import Entity, Field, Gpu, GpuInstance, GpuSample, Snapshot
from exporter.timespec import parse_duration

IDLE_WINDOW_S = float(parse_duration(IDLE_MEAN_WINDOW))  # the idle alert's mean window


class ActivityWindow:
    """Each GPU instance's activity over the last few minutes, so a pause between bursts is not called idle.

    Updated every sampling cycle whether or not anyone views the page, for the life of the daemon: the
    values are kept as machine floats (16 bytes a sample with its time, not a tuple of two float objects
    at 88): with a full 5-minute window at 1 s, about 0.4 MB at 8 GPUs x 7 instances and 3 MB at 64
    (1.5 and 12 MB as tuples).
    """

    def __init__(self, seconds: float = IDLE_WINDOW_S) -> None:
        self.seconds = seconds
        self._series: dict[tuple[int, int], _TimeSeries] = {}
        self._first: float | None = None
        self._last: float | None = None

    def update(self, snapshot: Snapshot) -> None:
        """Record a snapshot's GPU-instance activity; forget instances that no longer exist."""
        self._first = snapshot.timestamp if self._first is None else self._first
        self._last = snapshot.timestamp
        cutoff = snapshot.timestamp - self.seconds
        present = set()
        for gpu, inst in snapshot.topology.iter_instances():
            key = (gpu.index, inst.gi)
            present.add(key)
            sample = snapshot.samples.get(gpu.index)
            value = _read(sample, Entity(gpu.index, inst.gi), Field.GR_ENGINE_ACTIVE)
            if value is None:
                continue
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _TimeSeries()
            series.append(snapshot.timestamp, value)
            series.drop_before(cutoff)
        for key in self._series.keys() - present:
            del self._series[key]

    @property
    def covered(self) -> float:
        """Seconds of history the window holds: less than `seconds` shortly after start."""
        if self._first is None or self._last is None:
            return 0.0
        return min(self.seconds, self._last - self._first)

    def mean(self, gpu: int, gi: int) -> float | None:
        """Mean activity over the window, or None when nothing was read."""
        series = self._series.get((gpu, gi))
        return series.mean() if series is not None else None


class _TimeSeries:
    """Samples (time, value) in time order, oldest dropped; arrays compacted once half their space is spent."""

    __slots__ = ("_start", "_times", "_values")

    def __init__(self) -> None:
        self._times = array("d")
        self._values = array("d")
        self._start = 0  # the first sample still in the window

    def append(self, timestamp: float, value: float) -> None:
        self._times.append(timestamp)
        self._values.append(value)

    def drop_before(self, cutoff: float) -> None:
        times, start = self._times, self._start
        while start < len(times) and times[start] < cutoff:
            start += 1
        if start > len(times) // 2:
            del times[:start]
            del self._values[:start]
            start = 0
        self._start = start

    def mean(self) -> float | None:
        count = len(self._values) - self._start
        return math.fsum(self._values[self._start :]) / count if count else None


@dataclass(frozen=True, slots=True)
class PodView:
    """A container that holds a GPU, GPU instance or compute instance (from the kubelet)."""

    namespace: str
    pod: str
    container: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}"


@dataclass(frozen=True, slots=True)
class ComputeInstanceView:
    ci: int
    profile: str
    compute_slices: int
    activity: float | None
    pods: tuple[PodView, ...]


@dataclass(frozen=True, slots=True)
class InstanceView:
    gi: int
    profile: str
    placement_start: int | None  # None where the source reports no placements (DCGM)
    placement_size: int
    compute_slices: int
    memory_slices: int
    activity: float | None  # in the latest sample
    activity_5m: float | None  # mean over the idle window
    idle: bool
    memory_used_bytes: float | None
    memory_total_bytes: int
    compute_instances: tuple[ComputeInstanceView, ...]
    pods: tuple[PodView, ...]  # holders of any of its compute instances

    @property
    def slices(self) -> str:
        """The memory slices it covers, e.g. "4-7"; "?" where the source gives no placement."""
        start = self.placement_start
        return "?" if start is None else f"{start}-{start + self.placement_size - 1}"


@dataclass(frozen=True, slots=True)
class GpuView:
    gpu: int
    uuid: str
    model: str
    board: str | None
    mig_mode: str
    mig_enabled: bool
    stale: bool  # no fresh sample: its values are missing
    activity: float | None  # whole-GPU activity, for GPUs with MIG disabled
    memory_used_bytes: float | None
    memory_total_bytes: int
    instances: tuple[InstanceView, ...]
    pods: tuple[PodView, ...]  # holders of the whole GPU

    @property
    def placed(self) -> bool:
        """Whether the source reports where every instance sits, so a slice map can be drawn."""
        return all(i.placement_start is not None for i in self.instances)

    @property
    def compute_in_use(self) -> int:
        return sum(i.compute_slices for i in self.instances)

    @property
    def memory_in_use(self) -> int:
        return sum(i.memory_slices for i in self.instances)


@dataclass(frozen=True, slots=True)
class LayoutView:
    version: str
    source: str
    timestamp: float | None  # of the snapshot shown; None before the first sample
    idle_threshold: float
    idle_window_seconds: float
    idle_window_covered_seconds: float
    attribution: bool  # pod attribution is on (a kubelet socket answers)
    gpus: tuple[GpuView, ...]

    @property
    def instance_count(self) -> int:
        return sum(len(g.instances) for g in self.gpus)

    @property
    def idle_count(self) -> int:
        return sum(i.idle for g in self.gpus for i in g.instances)

    @property
    def window_filling(self) -> bool:
        """True while the idle window holds less history than its length, shortly after start."""
        return self.idle_window_covered_seconds < self.idle_window_seconds

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _read(sample: GpuSample | None, entity: Entity, fld: Field) -> float | None:
    return sample.get(entity, fld) if sample is not None else None


def _pods(holders: Mapping[Entity, tuple[Holder, ...]], entity: Entity) -> tuple[PodView, ...]:
    return tuple(PodView(h.namespace, h.pod, h.container) for h in holders.get(entity, ()))


def _instance(
    gpu: Gpu,
    inst: GpuInstance,
    sample: GpuSample | None,
    window: ActivityWindow,
    holders: Mapping[Entity, tuple[Holder, ...]],
) -> InstanceView:
    entity = Entity(gpu.index, inst.gi)
    mean = window.mean(gpu.index, inst.gi)
    return InstanceView(
        gi=inst.gi,
        profile=inst.profile,
        placement_start=inst.placement_start,
        placement_size=inst.placement_size,
        compute_slices=inst.compute_slices,
        memory_slices=inst.memory_slices,
        activity=_read(sample, entity, Field.GR_ENGINE_ACTIVE),
        activity_5m=mean,
        idle=mean is not None and mean < IDLE_RATIO,
        memory_used_bytes=_read(sample, entity, Field.MEMORY_USED),
        memory_total_bytes=inst.memory_total_bytes,
        compute_instances=tuple(
            ComputeInstanceView(
                ci=ci.ci,
                profile=ci.profile,
                compute_slices=ci.compute_slices,
                activity=_read(sample, Entity(gpu.index, inst.gi, ci.ci), Field.GR_ENGINE_ACTIVE),
                pods=_pods(holders, Entity(gpu.index, inst.gi, ci.ci)),
            )
            for ci in inst.compute_instances
        ),
        pods=_pods(holders, entity),
    )


def layout(
    snapshot: Snapshot | None, window: ActivityWindow, source: str, attribution: AttributionProvider | None = None
) -> LayoutView:
    """The node's GPUs and MIG layout with live values (the body of /api/layout and what the page draws)."""
    attributed = attribution is not None and attribution.kubelet_up is not None
    gpus = []
    if snapshot is not None:
        resolved = attribution.attribution.resolve(snapshot.topology) if attribution is not None and attributed else {}
        holders = holders_with_instances(resolved)
        for gpu in snapshot.topology.gpus:
            sample = snapshot.samples.get(gpu.index)
            whole = Entity(gpu.index)
            gpus.append(
                GpuView(
                    gpu=gpu.index,
                    uuid=gpu.uuid,
                    model=gpu.model,
                    board=gpu.board,
                    mig_mode=gpu.mig_mode,
                    mig_enabled=gpu.mig_enabled,
                    stale=gpu.index in snapshot.stale_gpus or sample is None,
                    activity=None if gpu.mig_enabled else _read(sample, whole, Field.GR_ENGINE_ACTIVE),
                    memory_used_bytes=_read(sample, whole, Field.MEMORY_USED),
                    memory_total_bytes=gpu.memory_total_bytes,
                    instances=tuple(_instance(gpu, inst, sample, window, holders) for inst in gpu.instances),
                    pods=_pods(holders, whole),
                )
            )
    return LayoutView(
        version=__version__,
        source=source,
        timestamp=snapshot.timestamp if snapshot else None,
        idle_threshold=IDLE_RATIO,
        idle_window_seconds=window.seconds,
        idle_window_covered_seconds=window.covered,
        attribution=attributed,
        gpus=tuple(gpus),
    )
