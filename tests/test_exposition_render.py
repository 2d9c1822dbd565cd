"""The template renderer writes, byte for byte, what prometheus-client's generate_latest writes for the same families.

prometheus-client is the oracle: over random topologies, values (NaN, infinities, -0.0, tiny and huge
numbers, big counters) and label values (quotes, backslashes, newlines, unicode), with and without pod
labels and dcgm-exporter names, in both formats, for the first sample of a shape and for later ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import exposition as text_format
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import CollectorRegistry

from exporter.exposition.dcgm import builders_for
from exporter.exposition.native import native_families
from exporter.exposition.pods import pod_families, with_pod_labels
from exporter.exposition.render import Renderer
from exporter.exposition.series import Builder, DynamicFamily, EntityValues
from exporter.exposition.template import Format
from exporter.kubernetes.attribution import Allocation, Holder, PodAttribution
from exporter.model import (
    ComputeInstance,
    Entity,
    Field,
    Gpu,
    GpuInstance,
    GpuSample,
    Snapshot,
    Topology,
)
from tests.support.snapshots import fixed_snapshot

# Label text: quotes, backslashes, newlines and any unicode but lone surrogates (not encodable in UTF-8).
SPECIAL = st.sampled_from(['"', "\\", "\n", "\\n", "{", "}", ",", "=", " ", "é", "☃", "\U0001f600", "\r", "\t"])
LABEL = st.lists(st.one_of(SPECIAL, st.characters(blacklist_categories=("Cs",))), max_size=6).map("".join)
VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e300, 1234567.0, 999999.9, 0.1, 2.0**53 + 1]),
    st.integers(min_value=-(2**64), max_value=2**64),
)
COUNT = st.integers(min_value=0, max_value=2**63)


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    gpus = []
    for index in range(draw(st.integers(0, 3))):
        mig = draw(st.booleans())
        instances = []
        if mig:
            for gi in draw(st.lists(st.integers(0, 14), unique=True, max_size=3)):
                cis = tuple(
                    ComputeInstance(gi=gi, ci=ci, profile=draw(LABEL), compute_slices=1, mig_uuid=draw(LABEL))
                    for ci in draw(st.lists(st.integers(0, 7), unique=True, max_size=2))
                )
                instances.append(
                    GpuInstance(
                        gi=gi,
                        profile=draw(LABEL),
                        profile_id=19,
                        placement_start=draw(st.none() | st.integers(0, 7)),
                        placement_size=draw(st.integers(1, 8)),
                        compute_slices=draw(st.integers(1, 7)),
                        memory_slices=draw(st.integers(1, 8)),
                        memory_total_bytes=draw(st.integers(0, 2**40)),
                        compute_instances=cis,
                    )
                )
        gpus.append(
            Gpu(
                index=index,
                uuid=draw(LABEL),
                model=draw(LABEL),
                board=None,
                driver_version=draw(LABEL),
                mig_enabled=mig,
                memory_total_bytes=draw(st.integers(0, 2**40)),
                mig_pending=draw(st.none() | st.booleans()),
                instances=tuple(instances),
            )
        )
    return Topology(tuple(gpus))


def _entities(gpu: Gpu) -> list[Entity]:
    out = [Entity(gpu.index)]
    for inst in gpu.instances:
        out.append(Entity(gpu.index, inst.gi))
        out.extend(Entity(gpu.index, inst.gi, ci.ci) for ci in inst.compute_instances)
    return out


@st.composite
def snapshots(draw: st.DrawFn, topology: Topology) -> Snapshot:
    """A sample of `topology`: some GPUs stale, any subset of fields per entity, any values."""
    samples = {}
    for gpu in topology.gpus:
        if draw(st.booleans()) and draw(st.booleans()):
            continue  # stale: no sample for this GPU
        values: dict[Entity, EntityValues] = {}
        for entity in _entities(gpu):
            if draw(st.booleans()) or entity.gi is None:
                values[entity] = draw(st.dictionaries(st.sampled_from(list(Field)), VALUE, max_size=len(Field)))
        unsupported = draw(st.dictionaries(st.sampled_from(list(Field)), LABEL, max_size=3))
        samples[gpu.index] = GpuSample(gpu=gpu.index, values=values, unsupported=unsupported)
    return Snapshot(
        source=draw(LABEL),
        topology=topology,
        samples=samples,
        timestamp=draw(VALUE),
        duration=draw(VALUE),
        source_up=draw(st.booleans()),
        errors=draw(st.dictionaries(st.tuples(LABEL, LABEL), COUNT, max_size=3)),
    )


@dataclasses.dataclass
class FixedAttribution:
    """An AttributionProvider holding a fixed answer, as the refresher does after a List."""

    attribution: PodAttribution
    kubelet_up: bool | None


@st.composite
def attributions(draw: st.DrawFn, topology: Topology) -> FixedAttribution:
    device_ids = [g.uuid for g in topology.gpus] + [ci.mig_uuid for _, _, ci in topology.iter_compute_instances()]
    allocations = ()
    if device_ids:
        allocations = tuple(
            Allocation(
                "nvidia.com/gpu", draw(st.sampled_from(device_ids)), Holder(draw(LABEL), draw(LABEL), draw(LABEL))
            )
            for _ in range(draw(st.integers(0, 4)))
        )
    return FixedAttribution(PodAttribution(allocations), draw(st.none() | st.booleans()))


def reference_families(builders: Iterable[Builder], snapshot: Snapshot) -> list[Metric]:
    """The same families as plain prometheus-client Metrics: each present value added with add_sample."""
    out = []
    for builder in builders:
        for family in builder.families(snapshot):
            metric = Metric(family.name, family.documentation, family.type)
            if isinstance(family, DynamicFamily):
                for labels, value in family.rows(snapshot):
                    metric.add_sample(family.sample_name, dict(zip(family.labelnames, labels, strict=True)), value)
            else:
                entities: list[Entity] = []

                def row_of(entity: Entity, entities: list[Entity] = entities) -> int:
                    entities.append(entity)
                    return len(entities) - 1

                keys = [family.reader.compile(s.key, row_of) for s in family.series]
                rows = [
                    None if (sample := snapshot.samples.get(e.gpu)) is None else sample.values.get(e, {})
                    for e in entities
                ]
                for series, value in zip(family.series, family.reader.values(snapshot, rows, keys), strict=True):
                    if value is not None:
                        metric.add_sample(family.sample_name, dict(series.labels), value)
            out.append(metric)
    return out


class _Collector:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def generate_latest(fmt: Format, families: list[Metric]) -> bytes:
    """prometheus-client's own exposition, with its default escaping."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families))
    if fmt is Format.OPENMETRICS:
        body: bytes = openmetrics_format.generate_latest(registry)  # type: ignore[no-untyped-call]
        return body
    return text_format.generate_latest(registry)


def assert_matches_prometheus_client(builders: Sequence[Builder], snapshots: Sequence[Snapshot]) -> None:
    renderer = Renderer(builders)  # one renderer: later snapshots reuse the first one's template
    for snapshot in snapshots:
        for fmt in Format:
            assert renderer.render(snapshot, fmt) == generate_latest(fmt, reference_families(builders, snapshot))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), names=st.sampled_from(["native", "dcgm"]), pod_labels=st.booleans())
def test_bytes_equal_generate_latest(data: st.DataObject, names: str, pod_labels: bool) -> None:
    """Any topology, values and labels: text and OpenMetrics bytes equal prometheus-client's, sample after sample."""
    topology = data.draw(topologies())
    provider = data.draw(attributions(topology))
    builders = list(builders_for(names))
    if pod_labels:
        builders = [with_pod_labels(b, provider) if b is native_families else b for b in builders]
    builders.append(pod_families(provider))
    samples = [data.draw(snapshots(topology)) for _ in range(3)]
    # A sample repeated, then an earlier one again: families whose rows did not change reuse their text.
    assert_matches_prometheus_client(builders, [*samples, samples[-1], samples[0]])


def test_dgx_exposition_equals_generate_latest_in_every_mode() -> None:
    """The dgx-h100 scenario, natively and with dcgm-exporter names, matches prometheus-client in both formats."""
    snapshot = fixed_snapshot()
    for names in ("native", "dcgm"):
        assert_matches_prometheus_client(builders_for(names), [snapshot, fixed_snapshot(t=snapshot.timestamp + 7)])


def test_template_is_built_once_per_shape() -> None:
    """Samples of one topology reuse the template; a new layout or a new pod attribution builds it again."""
    provider = FixedAttribution(PodAttribution(), None)
    builds: list[Snapshot] = []

    def counted(builder: Builder) -> Builder:
        def families(snapshot: Snapshot) -> Iterable[object]:
            builds.append(snapshot)
            return builder.families(snapshot)

        return Builder(families, builder.shape)  # type: ignore[arg-type]

    renderer = Renderer([counted(with_pod_labels(native_families, provider))])
    first = fixed_snapshot()
    for t in range(5):
        renderer.render(fixed_snapshot(t=first.timestamp + t))
    assert len(builds) == 1
    rebuilt = dataclasses.replace(first, topology=Topology(first.topology.gpus[:2]))
    renderer.render(rebuilt)
    renderer.render(rebuilt)
    assert len(builds) == 2
    gpu = first.topology.gpus[0]
    provider.attribution = PodAttribution((Allocation("nvidia.com/gpu", gpu.uuid, Holder("ns", "pod", "c")),))
    text = renderer.render(rebuilt).decode()
    assert len(builds) == 3
    assert f'mig_gpu_power_watts{{container="c",gpu="0",namespace="ns",pod="pod",uuid="{gpu.uuid}"}}' in text
