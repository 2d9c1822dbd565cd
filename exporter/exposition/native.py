"""The metric contract's native families: GPUs, GPU instances and compute instances (README's metric table)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from exporter.contract import families as fam
from exporter.exposition.render import new_family
from exporter.model import Entity, Field, Snapshot


def native_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric contract's native families (see README's metric table)."""
    yield from _gpu_families(snapshot)
    yield from _instance_families(snapshot)
    yield from _compute_instance_families(snapshot)


def _gpu_families(snapshot: Snapshot) -> Iterator[Metric]:
    info = new_family(fam.GPU_INFO)
    scalar = {
        Field.MEMORY_TOTAL: new_family(fam.GPU_MEMORY_TOTAL),
        Field.MEMORY_USED: new_family(fam.GPU_MEMORY_USED),
        Field.POWER: new_family(fam.GPU_POWER),
        Field.TEMPERATURE: new_family(fam.GPU_TEMPERATURE),
    }
    activity = {f: new_family(family) for f, family in fam.GPU_ACTIVITY.items()}
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
    yield from (info, *scalar.values(), *activity.values())


def _instance_families(snapshot: Snapshot) -> Iterator[Metric]:
    info = new_family(fam.INSTANCE_INFO)
    compute = new_family(fam.INSTANCE_COMPUTE_SLICES)
    memory = new_family(fam.INSTANCE_MEMORY_SLICES)
    activity = {f: new_family(family) for f, family in fam.INSTANCE_ACTIVITY.items()}
    mem_used = new_family(fam.INSTANCE_MEMORY_USED)
    mem_total = new_family(fam.INSTANCE_MEMORY_TOTAL)
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
    info = new_family(fam.COMPUTE_INSTANCE_INFO)
    activity = {f: new_family(family) for f, family in fam.COMPUTE_INSTANCE_ACTIVITY.items()}
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
