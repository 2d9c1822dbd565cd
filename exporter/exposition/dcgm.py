"""dcgm-exporter's metric names and labels (`--names dcgm`), served beside the native families.

Dashboards and alerts written for dcgm-exporter keep working after a switch: the same
family names and units (MiB, watts, degrees C, 0..1 ratios) with its labels `gpu`, `UUID`,
`device` (nvidiaN) and `modelName`, and on every GPU-instance series `GPU_I_PROFILE` and
`GPU_I_ID`. Built from the snapshot like the native families, so it works with every source.

Deliberate differences from dcgm-exporter: power and temperature appear once per GPU, not
repeated on every GPU instance; compute instances have no dcgm-exporter series (it reports
GPU instances only); FB_FREE is total minus used, so on DCGM it may include reserved memory;
no `pci_bus_id` or `hostname` labels (Prometheus' `instance` label names the node).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric

from exporter.exposition.health import exporter_families
from exporter.exposition.native import native_families
from exporter.exposition.render import FamilyBuilder
from exporter.model import Entity, Field, Gpu, GpuInstance, Snapshot

MIB = 1024**2

_PROFILING: dict[Field, tuple[str, str]] = {
    Field.GR_ENGINE_ACTIVE: ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active."),
    Field.SM_ACTIVE: ("DCGM_FI_PROF_SM_ACTIVE", "The ratio of cycles an SM has at least 1 warp assigned."),
    Field.SM_OCCUPANCY: ("DCGM_FI_PROF_SM_OCCUPANCY", "The ratio of number of warps resident on an SM."),
    Field.TENSOR_ACTIVE: ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "Ratio of cycles the tensor (HMMA) pipe is active."),
    Field.DRAM_ACTIVE: (
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "Ratio of cycles the device memory interface is active sending or receiving data.",
    ),
}


class _Family:
    """One dcgm-exporter family: GPU series carry gpu/UUID/device/modelName, GPU-instance series also the MIG labels."""

    def __init__(self, name: str, doc: str) -> None:
        self.family = Metric(name, f"{doc} (dcgm-exporter name; --names dcgm)", "gauge")

    def add(self, gpu: Gpu, inst: GpuInstance | None, value: float) -> None:
        labels = {"gpu": str(gpu.index), "UUID": gpu.uuid, "device": f"nvidia{gpu.index}", "modelName": gpu.model}
        if inst is not None:
            labels |= {"GPU_I_PROFILE": inst.profile, "GPU_I_ID": str(inst.gi)}
        self.family.add_sample(self.family.name, labels, value)


def dcgm_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The fields both exporters report, under dcgm-exporter's names, units and labels."""
    activity = {f: _Family(*meta) for f, meta in _PROFILING.items()}
    fb_used = _Family("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).")
    fb_free = _Family("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")
    power = _Family("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).")
    temp = _Family("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).")
    for gpu in snapshot.topology.gpus:
        sample = snapshot.samples.get(gpu.index)
        if sample is None:
            continue
        whole = sample.values.get(Entity(gpu.index), {})
        if Field.POWER in whole:
            power.add(gpu, None, whole[Field.POWER])
        if Field.TEMPERATURE in whole:
            temp.add(gpu, None, whole[Field.TEMPERATURE])
        targets: Sequence[tuple[GpuInstance | None, Entity]] = (
            [(inst, Entity(gpu.index, inst.gi)) for inst in gpu.instances]
            if gpu.mig_enabled
            else [(None, Entity(gpu.index))]
        )
        for inst, entity in targets:
            values = sample.values.get(entity, {})
            for fld, family in activity.items():
                if fld in values:
                    family.add(gpu, inst, values[fld])
            if Field.MEMORY_USED in values:
                used = values[Field.MEMORY_USED]
                fb_used.add(gpu, inst, round(used / MIB))
                total = values.get(Field.MEMORY_TOTAL)
                if total is not None:
                    fb_free.add(gpu, inst, round((total - used) / MIB))
    for family in (*activity.values(), fb_used, fb_free, power, temp):
        yield family.family


def builders_for(names: str) -> tuple[FamilyBuilder, ...]:
    """The family builders for a `--names` mode: dcgm serves dcgm-exporter's names as well as the native ones."""
    if names == "dcgm":
        return (native_families, exporter_families, dcgm_families)
    return (native_families, exporter_families)
