"""Snapshot -> metric families -> bytes, rendered at most once per snapshot and served as-is.

A scrape never calls the GPU: it serves the bytes of the latest snapshot, rendered once per
snapshot, format and encoding, by the first scrape that asks for it. The text uses
prometheus-client's own exposition code over a throwaway registry whose only collector yields
families built from the frozen snapshot.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import exposition as text_format
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import CollectorRegistry

from exporter import __version__
from exporter.kubernetes.attribution import AttributionProvider, Holder, PodAttribution, holders_with_instances
from exporter.model import ACTIVITY_FIELDS, Entity, Field, Snapshot, Topology

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_ACTIVITY_HELP = {
    Field.GR_ENGINE_ACTIVE: "Fraction of time the graphics/compute engine was active",
    Field.SM_ACTIVE: "Fraction of time at least one warp was active on an SM, averaged over SMs",
    Field.SM_OCCUPANCY: "Fraction of resident warps to the SM maximum, averaged over SMs",
    Field.TENSOR_ACTIVE: "Fraction of cycles the tensor pipes were active",
    Field.DRAM_ACTIVE: "Fraction of cycles device memory was busy sending or receiving data",
}
_SAMPLED_NOTE = "sampled in the background every interval (see mig_exporter_last_sample_timestamp_seconds)"

FamilyBuilder = Callable[[Snapshot], Iterable[Metric]]

# prometheus-client versions that know UTF-8 metric names check every label name rune by rune under the
# default OpenMetrics escaping. Every name here is a classic one, for which "allow-utf-8" writes the same
# bytes (tests compare) in about 40% of the time.
_OPENMETRICS_OPTIONS: dict[str, Any] = (
    {"escaping": openmetrics_format.ALLOWUTF8} if hasattr(openmetrics_format, "ALLOWUTF8") else {}
)


def _gauge(name: str, doc: str, labels: list[str], unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels, unit=unit)


def native_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric contract's native families (see README's metric table)."""
    yield from _gpu_families(snapshot)
    yield from _instance_families(snapshot)
    yield from _compute_instance_families(snapshot)


def _gpu_families(snapshot: Snapshot) -> Iterator[Metric]:
    info = _gauge("mig_gpu_info", "GPU identity; always 1", ["gpu", "uuid", "model", "driver_version", "mig_mode"])
    mem_total = _gauge("mig_gpu_memory_total_bytes", "Total memory of the whole GPU", ["gpu", "uuid"])
    mem_used = _gauge("mig_gpu_memory_used_bytes", "Memory used on the whole GPU", ["gpu", "uuid"])
    power = _gauge("mig_gpu_power_watts", "Power draw of the whole GPU", ["gpu", "uuid"])
    temp = _gauge("mig_gpu_temperature_celsius", "GPU die temperature", ["gpu", "uuid"])
    activity = {
        f: _gauge(
            f"mig_gpu_{f.value}_ratio",
            f"{_ACTIVITY_HELP[f]}, whole GPU with MIG disabled; {_SAMPLED_NOTE}",
            ["gpu", "uuid"],
        )
        for f in ACTIVITY_FIELDS
    }
    scalar = {Field.MEMORY_TOTAL: mem_total, Field.MEMORY_USED: mem_used, Field.POWER: power, Field.TEMPERATURE: temp}
    for gpu in snapshot.topology.gpus:
        labels = [str(gpu.index), gpu.uuid]
        info.add_metric([*labels, gpu.model, gpu.driver_version, gpu.mig_mode], 1)
        sample = snapshot.samples.get(gpu.index)
        if sample is None:
            continue
        values = sample.values.get(Entity(gpu.index), {})
        for fld, family in scalar.items():
            if fld in values:
                family.add_metric(labels, values[fld])
        if not gpu.mig_enabled:
            for fld, family in activity.items():
                if fld in values:
                    family.add_metric(labels, values[fld])
    yield from (info, mem_total, mem_used, power, temp, *activity.values())


def _instance_families(snapshot: Snapshot) -> Iterator[Metric]:
    labels = ["gpu", "gi", "profile"]
    info = _gauge(
        "mig_instance_info",
        "MIG GPU instance identity and placement (in memory slices); always 1",
        ["gpu", "uuid", "gi", "profile", "placement_start", "placement_size"],
    )
    compute = _gauge("mig_instance_compute_slices", "Compute slices of the GPU instance (of 7)", labels)
    memory = _gauge("mig_instance_memory_slices", "Memory slices of the GPU instance (of 8)", labels)
    activity = {
        f: _gauge(
            f"mig_instance_{f.value}_ratio",
            f"{_ACTIVITY_HELP[f]}, relative to the GPU instance; {_SAMPLED_NOTE}",
            labels,
        )
        for f in ACTIVITY_FIELDS
    }
    mem_used = _gauge("mig_instance_memory_used_bytes", "Memory used in the GPU instance", labels)
    mem_total = _gauge("mig_instance_memory_total_bytes", "Memory of the GPU instance", labels)
    for gpu, inst in snapshot.topology.iter_instances():
        key = [str(gpu.index), str(inst.gi), inst.profile]
        info.add_metric(
            [
                str(gpu.index),
                gpu.uuid,
                str(inst.gi),
                inst.profile,
                "" if inst.placement_start is None else str(inst.placement_start),
                str(inst.placement_size),
            ],
            1,
        )
        compute.add_metric(key, inst.compute_slices)
        memory.add_metric(key, inst.memory_slices)
        sample = snapshot.samples.get(gpu.index)
        if sample is None:
            continue
        values = sample.values.get(Entity(gpu.index, inst.gi), {})
        for fld, family in activity.items():
            if fld in values:
                family.add_metric(key, values[fld])
        if Field.MEMORY_USED in values:
            mem_used.add_metric(key, values[Field.MEMORY_USED])
        mem_total.add_metric(key, values.get(Field.MEMORY_TOTAL, inst.memory_total_bytes))
    yield from (info, compute, memory, *activity.values(), mem_used, mem_total)


def _compute_instance_families(snapshot: Snapshot) -> Iterator[Metric]:
    labels = ["gpu", "gi", "ci", "profile"]
    info = _gauge(
        "mig_compute_instance_info",
        "MIG compute instance (one MIG device) identity; always 1",
        ["gpu", "gi", "ci", "profile", "ci_profile", "mig_uuid"],
    )
    activity = {
        f: _gauge(
            f"mig_compute_instance_{f.value}_ratio",
            f"{_ACTIVITY_HELP[f]}, relative to the compute instance; {_SAMPLED_NOTE}",
            labels,
        )
        for f in ACTIVITY_FIELDS
    }
    for gpu, inst, ci in snapshot.topology.iter_compute_instances():
        key = [str(gpu.index), str(inst.gi), str(ci.ci), inst.profile]
        info.add_metric([*key[:3], inst.profile, ci.profile, ci.mig_uuid], 1)
        sample = snapshot.samples.get(gpu.index)
        if sample is None:
            continue
        values = sample.values.get(Entity(gpu.index, inst.gi, ci.ci), {})
        for fld, family in activity.items():
            if fld in values:
                family.add_metric(key, values[fld])
    yield from (info, *activity.values())


def exporter_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The exporter's own health: build, source state, sample age and cost, errors, field support."""
    build = _gauge("mig_exporter_build_info", "mig-exporter version and source; always 1", ["version", "source"])
    build.add_metric([__version__, snapshot.source], 1)
    up = _gauge("mig_exporter_source_up", "1 when the last sampling cycle read every GPU", ["source"])
    up.add_metric([snapshot.source], 1 if snapshot.source_up else 0)
    last = _gauge(
        "mig_exporter_last_sample_timestamp_seconds",
        "Unix time the values in this exposition were sampled; scrapes serve the latest sample",
        [],
    )
    last.add_metric([], snapshot.timestamp)
    duration = _gauge("mig_exporter_sample_duration_seconds", "Duration of the last sampling cycle", [])
    duration.add_metric([], snapshot.duration)
    errors = CounterMetricFamily(
        "mig_exporter_errors", "Errors by stage (discover, sample) and reason", labels=["stage", "reason"]
    )
    for (stage, reason), count in sorted(snapshot.errors.items()):
        errors.add_metric([stage, reason], count)
    supported = _gauge(
        "mig_exporter_field_supported",
        "1 when the source reads this field on this GPU; 0 with the reason when it cannot (the series is then absent)",
        ["gpu", "field", "reason"],
    )
    for index, sample in sorted(snapshot.samples.items()):
        present = {f for values in sample.values.values() for f in values}
        for fld in Field:
            if fld in sample.unsupported:
                supported.add_metric([str(index), fld.value, sample.unsupported[fld]], 0)
            elif fld in present:
                supported.add_metric([str(index), fld.value, ""], 1)
    yield from (build, up, last, duration, errors, supported)


class _SnapshotCollector:
    """A collector over one frozen snapshot, for one render."""

    def __init__(self, snapshot: Snapshot, builders: Iterable[FamilyBuilder]) -> None:
        self._snapshot = snapshot
        self._builders = tuple(builders)

    def collect(self) -> Iterator[Metric]:
        for build in self._builders:
            yield from build(self._snapshot)


class Rendered:
    """The exposition of one snapshot: each format and encoding is rendered on first use, then kept.

    A snapshot that no scrape asks for is never rendered, so sampling every second while Prometheus
    scrapes every 15 s renders once per scrape, not once per sample; every later scrape of the same
    snapshot, in any number, is served these bytes.
    """

    def __init__(self, snapshot: Snapshot, builders: Iterable[FamilyBuilder]) -> None:
        self.snapshot = snapshot
        self.timestamp = snapshot.timestamp
        self._builders = tuple(builders)
        self._bodies: dict[tuple[bool, bool], bytes] = {}

    @property
    def text(self) -> bytes:
        """Prometheus text format."""
        return self.body(False, False)

    @property
    def openmetrics(self) -> bytes:
        """OpenMetrics text format."""
        return self.body(True, False)

    def body(self, openmetrics: bool, gzipped: bool) -> bytes:
        """The body for a format and encoding."""
        cached = self._bodies.get((openmetrics, gzipped))
        if cached is not None:
            return cached
        if gzipped:
            body = gzip.compress(self.body(openmetrics, False), compresslevel=6, mtime=0)
        else:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_SnapshotCollector(self.snapshot, self._builders))
            if openmetrics:
                body = openmetrics_format.generate_latest(registry, **_OPENMETRICS_OPTIONS)  # type: ignore[no-untyped-call]
            else:
                body = text_format.generate_latest(registry)
        self._bodies[(openmetrics, gzipped)] = body
        return body


def render(snapshot: Snapshot, builders: Iterable[FamilyBuilder]) -> Rendered:
    """The exposition of one snapshot in Prometheus text and OpenMetrics formats (rendered on first use)."""
    return Rendered(snapshot, builders)


class Exposition:
    """Holds the rendered bytes of the latest snapshot; subscribe `update` to the sampler."""

    def __init__(self, builders: Iterable[FamilyBuilder] = (native_families, exporter_families)) -> None:
        self.builders = tuple(builders)
        self.current: Rendered | None = None

    def update(self, snapshot: Snapshot) -> None:
        """Make `snapshot` the one scrapes serve (a single reference swap); it is rendered when first scraped."""
        self.current = render(snapshot, self.builders)


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header asks for OpenMetrics (as Prometheus does when it supports it)."""
    return any(part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(","))


# Pod attribution (Kubernetes): combined with the snapshot at render time, so the kubelet is
# never called on a scrape and a new attribution shows from the next rendered sample.

_HOLDER_LABELS = ["namespace", "pod", "container"]
_ENTITY_FAMILY_PREFIXES = ("mig_gpu_", "mig_instance_", "mig_compute_instance_")


_LabelKey = tuple[str, str, str]  # (gpu, gi, ci) label values; "" where absent


class _Resolved:
    """Holders for the latest (attribution, topology) pair; resolved again only when either changes."""

    def __init__(self, provider: AttributionProvider) -> None:
        self._provider = provider
        self._key: tuple[PodAttribution, Topology] | None = None
        self.by_entity: dict[Entity, tuple[Holder, ...]] = {}
        self.by_labels: dict[_LabelKey, tuple[Holder, ...]] = {}

    def update(self, topology: Topology) -> _Resolved:
        attribution = self._provider.attribution
        if self._key is None or self._key[0] is not attribution or self._key[1] is not topology:
            self._key, self.by_entity = (attribution, topology), attribution.resolve(topology)
            self.by_labels = {
                (str(e.gpu), _label(e.gi), _label(e.ci)): holders
                for e, holders in holders_with_instances(self.by_entity).items()
            }
        return self


def pod_families(provider: AttributionProvider) -> FamilyBuilder:
    """`mig_instance_pod_info` (one series per container and device it holds) and `mig_exporter_kubelet_up`."""
    resolved = _Resolved(provider)

    def build(snapshot: Snapshot) -> Iterator[Metric]:
        info = _gauge(
            "mig_instance_pod_info",
            "Kubernetes container holding the MIG device (gi and ci empty for a whole GPU); always 1",
            ["gpu", "gi", "ci", *_HOLDER_LABELS],
        )
        for entity, holders in resolved.update(snapshot.topology).by_entity.items():
            ids = [str(entity.gpu), _label(entity.gi), _label(entity.ci)]
            for holder in holders:
                info.add_metric([*ids, holder.namespace, holder.pod, holder.container], 1)
        yield info
        if provider.kubelet_up is not None:
            up = _gauge("mig_exporter_kubelet_up", "1 when the last kubelet pod-resources List succeeded", [])
            up.add_metric([], 1 if provider.kubelet_up else 0)
            yield up

    return build


def with_pod_labels(builder: FamilyBuilder, provider: AttributionProvider) -> FamilyBuilder:
    """`builder` with namespace, pod and container labels on the series of held GPUs, instances and CIs.

    A GPU instance carries the holders of all its compute instances. Several holders of one
    entity (time-slicing) are joined with commas, position by position, so every entity
    keeps exactly one series and sums over instances stay right.
    """
    resolved = _Resolved(provider)

    def build(snapshot: Snapshot) -> Iterator[Metric]:
        held = resolved.update(snapshot.topology).by_labels
        for family in builder(snapshot):
            if held and family.name.startswith(_ENTITY_FAMILY_PREFIXES):
                family.samples = [s._replace(labels=_with_holders(s.labels, held)) for s in family.samples]
            yield family

    return build


def _label(value: int | None) -> str:
    return "" if value is None else str(value)


def _with_holders(labels: dict[str, str], held: dict[_LabelKey, tuple[Holder, ...]]) -> dict[str, str]:
    holders = held.get((labels.get("gpu", ""), labels.get("gi", ""), labels.get("ci", "")))
    if not holders:
        return labels
    return {
        **labels,
        "namespace": ",".join(h.namespace for h in holders),
        "pod": ",".join(h.pod for h in holders),
        "container": ",".join(h.container for h in holders),
    }
