"""The metric contract's native families: GPUs, GPU instances and compute instances (README's metric table)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from exporter.exposition.render import gauge as _gauge
from exporter.model import ACTIVITY_FIELDS, Entity, Field, Snapshot

_ACTIVITY_HELP = {
    Field.GR_ENGINE_ACTIVE: "Fraction of time the graphics/compute engine was active",
    Field.SM_ACTIVE: "Fraction of time at least one warp was active on an SM, averaged over SMs",
    Field.SM_OCCUPANCY: "Fraction of resident warps to the SM maximum, averaged over SMs",
    Field.TENSOR_ACTIVE: "Fraction of cycles the tensor pipes were active",
    Field.DRAM_ACTIVE: "Fraction of cycles device memory was busy sending or receiving data",
}
_SAMPLED_NOTE = "sampled in the background every interval (see mig_exporter_last_sample_timestamp_seconds)"


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
