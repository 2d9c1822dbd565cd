"""Pod attribution (Kubernetes): `mig_instance_pod_info`, and pod labels on the native series.

Combined with the snapshot at render time, so the kubelet is never called on a scrape and a new
attribution shows from the next rendered sample.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from exporter.contract import families as fam
from exporter.exposition.render import FamilyBuilder, new_family
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


def pod_families(provider: AttributionProvider) -> FamilyBuilder:
    """`mig_instance_pod_info` (one series per container and device it holds) and `mig_exporter_kubelet_up`."""
    resolved = _Resolved(provider)

    def build(snapshot: Snapshot) -> Iterator[Metric]:
        info = new_family(fam.INSTANCE_POD_INFO)
        for entity, holders in resolved.update(snapshot.topology).by_entity.items():
            ids = [str(entity.gpu), _label(entity.gi), _label(entity.ci)]
            for holder in holders:
                info.add_metric([*ids, holder.namespace, holder.pod, holder.container], 1)
        yield info
        if provider.kubelet_up is not None:
            up = new_family(fam.KUBELET_UP)
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
            if held and family.name.startswith(fam.ENTITY_PREFIXES):
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
