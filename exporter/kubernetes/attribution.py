"""Which container holds which GPU device: pure types and the mapping of device IDs to entities.

The kubelet names devices the way the device plugin advertised them. NVIDIA's plugin uses
GPU UUIDs for whole GPUs (`nvidia.com/gpu`), MIG device UUIDs for MIG devices
(`nvidia.com/mig-<profile>` in the mixed strategy, `nvidia.com/gpu` in the single one),
`::N` suffixes for time-sliced replicas, and `MIG-GPU-<uuid>/<gi>/<ci>` with drivers older
than R470. GKE's plugin uses `nvidia<index>` and `nvidia<index>/gi<id>`, with `/vgpu<N>`
suffixes for shared GPUs. Resolution needs the node's topology,
so it happens when a snapshot is rendered; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from exporter.model import Entity, Topology

GPU_RESOURCE_PREFIXES = ("nvidia.com/gpu", "nvidia.com/mig-")

_SHARING_SUFFIX = re.compile(r"(::|/vgpu)\d+$")
_LEGACY_MIG = re.compile(r"^MIG-(GPU-[0-9a-fA-F-]+)/(\d+)/(\d+)$")
_GKE_GPU = re.compile(r"^nvidia(\d+)$")
_GKE_MIG = re.compile(r"^nvidia(\d+)/gi(\d+)$")


class KubeletError(Exception):
    """A pod-resources call failed; the message gives the gRPC status and details."""


def is_gpu_resource(resource: str) -> bool:
    """True for the extended resources NVIDIA's device plugins advertise (including `.shared` renames)."""
    return resource.startswith(GPU_RESOURCE_PREFIXES)


@dataclass(frozen=True, slots=True, order=True)
class Holder:
    """A container that was allocated a device."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True, slots=True)
class Allocation:
    """One device ID the kubelet reports as allocated to one container."""

    resource: str  # e.g. "nvidia.com/mig-3g.40gb"
    device_id: str  # e.g. "MIG-5c5d...", "MIG-5c5d...::2", "GPU-0df2...", "nvidia0/gi1"
    holder: Holder


@dataclass(frozen=True, slots=True)
class PodAttribution:
    """The GPU devices allocated to containers on this node, as one List call returned them."""

    allocations: tuple[Allocation, ...] = ()

    def resolve(self, topology: Topology) -> dict[Entity, tuple[Holder, ...]]:
        """Holders by entity: a compute instance for MIG devices, a GPU (gi and ci None) for whole GPUs.

        Device IDs that name nothing in `topology` (a device of another layout, or one
        this exporter cannot see) are left out. Holders of one entity (time-slicing) are
        sorted and unique.
        """
        index = _DeviceIndex(topology)
        found: dict[Entity, set[Holder]] = {}
        for allocation in self.allocations:
            for entity in index.lookup(allocation.device_id):
                found.setdefault(entity, set()).add(allocation.holder)
        ordered = sorted(found, key=_entity_order)
        return {entity: tuple(sorted(found[entity])) for entity in ordered}


def _entity_order(entity: Entity) -> tuple[int, int, int]:
    """GPU, then instance, then compute instance; a whole GPU first (Entity's own order fails on None)."""
    return entity.gpu, -1 if entity.gi is None else entity.gi, -1 if entity.ci is None else entity.ci


class KubeletClient(Protocol):
    """A pod-resources client: `list` raises KubeletError when the kubelet refuses or fails."""

    async def list(self, timeout: float) -> PodAttribution: ...

    async def close(self) -> None: ...


class AttributionProvider(Protocol):
    """Where the exposition reads the latest attribution from (the background refresher)."""

    @property
    def attribution(self) -> PodAttribution: ...

    @property
    def kubelet_up(self) -> bool | None:
        """True or False after the last List; None while there is no kubelet socket."""
        ...


class _DeviceIndex:
    """The device IDs a topology answers to."""

    def __init__(self, topology: Topology) -> None:
        self._gpus = {gpu.uuid: gpu.index for gpu in topology.gpus}
        self._migs = {
            ci.mig_uuid: Entity(gpu.index, inst.gi, ci.ci) for gpu, inst, ci in topology.iter_compute_instances()
        }
        self._compute_instances = frozenset(self._migs.values())
        self._instances = {
            (gpu.index, inst.gi): tuple(Entity(gpu.index, inst.gi, ci.ci) for ci in inst.compute_instances)
            for gpu, inst in topology.iter_instances()
        }

    def lookup(self, device_id: str) -> tuple[Entity, ...]:
        device_id = _SHARING_SUFFIX.sub("", device_id)
        if device_id in self._migs:
            return (self._migs[device_id],)
        if device_id in self._gpus:
            return (Entity(self._gpus[device_id]),)
        if legacy := _LEGACY_MIG.match(device_id):
            gpu = self._gpus.get(legacy.group(1))
            entity = Entity(gpu, int(legacy.group(2)), int(legacy.group(3))) if gpu is not None else None
            return (entity,) if entity in self._compute_instances else ()
        if gke := _GKE_MIG.match(device_id):
            # GKE hands out whole GPU instances: the container holds every compute instance in it.
            return self._instances.get((int(gke.group(1)), int(gke.group(2))), ())
        if (gke := _GKE_GPU.match(device_id)) and int(gke.group(1)) in self._gpus.values():
            return (Entity(int(gke.group(1))),)
        return ()


def holders_with_instances(resolved: Mapping[Entity, tuple[Holder, ...]]) -> dict[Entity, tuple[Holder, ...]]:
    """`resolved` plus an entry per GPU instance: the holders of any of its compute instances."""
    out: dict[Entity, set[Holder]] = {}
    for entity, holders in resolved.items():
        out.setdefault(entity, set()).update(holders)
        if entity.ci is not None:
            out.setdefault(Entity(entity.gpu, entity.gi), set()).update(holders)
    return {entity: tuple(sorted(holders)) for entity, holders in out.items()}
