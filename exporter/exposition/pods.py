"""Pod attribution (Kubernetes): `mig_instance_pod_info`, and pod labels on the native series.

Both depend on the attribution the background refresher holds, so it is part of their shape: a new
attribution builds their series again at the next sample, and the kubelet is never called on a scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from exporter.contract import families as fam
from exporter.exposition.series import CONSTANT, AnyFamily, Builder, FamilyTemplate, Series, SnapshotValue
from exporter.kubernetes.attribution import AttributionProvider, Holder, PodAttribution, holders_with_instances
from exporter.model import Entity, Snapshot, Topology

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


def pod_families(provider: AttributionProvider) -> Builder:
    """`mig_instance_pod_info` (one series per container and device it holds) and `mig_exporter_kubelet_up`."""
    resolved = _Resolved(provider)

    def build(snapshot: Snapshot) -> Iterator[AnyFamily]:
        info = FamilyTemplate.of(fam.INSTANCE_POD_INFO, CONSTANT)
        for entity, holders in resolved.update(snapshot.topology).by_entity.items():
            ids = [str(entity.gpu), _label(entity.gi), _label(entity.ci)]
            for holder in holders:
                info.add([*ids, holder.namespace, holder.pod, holder.container], 1)
        yield info
        if provider.kubelet_up is not None:
            up = FamilyTemplate.of(fam.KUBELET_UP, SnapshotValue(lambda _: _kubelet_up(provider)))
            up.add([], None)
            yield up

    def shape(snapshot: Snapshot) -> object:
        return (snapshot.topology, provider.attribution, provider.kubelet_up is not None)

    return Builder(build, shape)


def _kubelet_up(provider: AttributionProvider) -> float | None:
    up = provider.kubelet_up
    return None if up is None else 1 if up else 0


def native_holder_key(labels: Mapping[str, str]) -> _LabelKey:
    """The (gpu, gi, ci) a native series is about, from its labels."""
    return labels.get("gpu", ""), labels.get("gi", ""), labels.get("ci", "")


def dcgm_holder_key(labels: Mapping[str, str]) -> _LabelKey:
    """The (gpu, gi, ci) a dcgm-exporter series is about: a GPU instance (GPU_I_ID) or a whole GPU."""
    return labels.get("gpu", ""), labels.get("GPU_I_ID", ""), ""


def with_pod_labels(
    builder: Builder,
    provider: AttributionProvider,
    prefixes: tuple[str, ...] = fam.ENTITY_PREFIXES,
    key: Callable[[Mapping[str, str]], _LabelKey] = native_holder_key,
) -> Builder:
    """`builder` with namespace, pod and container labels on the series of held GPUs, instances and CIs.

    Only families whose names start with one of `prefixes` get them; `key` tells from a series' labels
    which entity it is about. A GPU instance carries the holders of all its compute instances. Several
    holders of one entity (time-slicing) are joined with commas, position by position, so every entity
    keeps exactly one series and sums over instances stay right.
    """
    resolved = _Resolved(provider)

    def build(snapshot: Snapshot) -> Iterator[AnyFamily]:
        held = resolved.update(snapshot.topology).by_labels
        for family in builder.families(snapshot):
            if held and isinstance(family, FamilyTemplate) and family.name.startswith(prefixes):
                family.series = [Series(_with_holders(s.labels, held, key), s.key) for s in family.series]
            yield family

    def shape(snapshot: Snapshot) -> object:
        return (builder.shape(snapshot), provider.attribution)

    return Builder(build, shape)


def _label(value: int | None) -> str:
    return "" if value is None else str(value)


def _with_holders(
    labels: Mapping[str, str],
    held: dict[_LabelKey, tuple[Holder, ...]],
    key: Callable[[Mapping[str, str]], _LabelKey],
) -> Mapping[str, str]:
    holders = held.get(key(labels))
    if not holders:
        return labels
    return {
        **labels,
        "namespace": ",".join(h.namespace for h in holders),
        "pod": ",".join(h.pod for h in holders),
        "container": ",".join(h.container for h in holders),
    }
