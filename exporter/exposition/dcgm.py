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

import math
from collections.abc import Iterator

from exporter.exposition.health import exporter_families
from exporter.exposition.native import native_families
from exporter.exposition.series import (
    AnyFamily,
    Builder,
    EntityCompute,
    EntityField,
    EntityValues,
    FamilyTemplate,
    Reader,
)
from exporter.exposition.xids import DCGM_HELP, DCGM_NAME, LastXid
from exporter.model import Entity, Field, Gpu, GpuInstance, Snapshot

MIB = 1024**2
_NOTE = " (dcgm-exporter name; --names dcgm)"


def _mib(size: float) -> float:
    """Bytes in whole MiB, as dcgm-exporter reports memory; NaN and infinities pass through."""
    mib = size / MIB
    return round(mib) if math.isfinite(mib) else mib


def _free_mib(values: EntityValues) -> float | None:
    used, total = values.get(Field.MEMORY_USED), values.get(Field.MEMORY_TOTAL)
    return None if used is None or total is None else _mib(total - used)


# Read on every GPU instance, or on the GPU itself where MIG is disabled: (name, help, reader).
PER_SLICE: tuple[tuple[str, str, Reader], ...] = (
    (
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "Ratio of time the graphics engine is active.",
        EntityField(Field.GR_ENGINE_ACTIVE),
    ),
    (
        "DCGM_FI_PROF_SM_ACTIVE",
        "The ratio of cycles an SM has at least 1 warp assigned.",
        EntityField(Field.SM_ACTIVE),
    ),
    (
        "DCGM_FI_PROF_SM_OCCUPANCY",
        "The ratio of number of warps resident on an SM.",
        EntityField(Field.SM_OCCUPANCY),
    ),
    (
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "Ratio of cycles the tensor (HMMA) pipe is active.",
        EntityField(Field.TENSOR_ACTIVE),
    ),
    (
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "Ratio of cycles the device memory interface is active sending or receiving data.",
        EntityField(Field.DRAM_ACTIVE),
    ),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", EntityField(Field.MEMORY_USED, _mib)),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", EntityCompute(_free_mib)),
)
# Read once per GPU, never repeated per GPU instance.
PER_GPU: tuple[tuple[str, str, Reader], ...] = (
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", EntityField(Field.POWER)),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", EntityField(Field.TEMPERATURE)),
    (DCGM_NAME, DCGM_HELP, LastXid()),  # the last XID code, as dcgm-exporter (exposition/xids.py)
)


def _labels(gpu: Gpu, inst: GpuInstance | None) -> dict[str, str]:
    """gpu/UUID/device/modelName on every series; GPU_I_PROFILE and GPU_I_ID on GPU-instance series."""
    labels = {"gpu": str(gpu.index), "UUID": gpu.uuid, "device": f"nvidia{gpu.index}", "modelName": gpu.model}
    if inst is not None:
        labels |= {"GPU_I_PROFILE": inst.profile, "GPU_I_ID": str(inst.gi)}
    return labels


def _dcgm(snapshot: Snapshot) -> Iterator[AnyFamily]:
    """The fields both exporters report, under dcgm-exporter's names, units and labels."""
    gpus = snapshot.topology.gpus
    slices = [
        (_labels(gpu, inst), Entity(gpu.index, inst.gi if inst is not None else None))
        for gpu in gpus
        for inst in (gpu.instances if gpu.mig_enabled else (None,))
    ]
    for name, doc, reader in PER_SLICE:
        family = FamilyTemplate(name, doc + _NOTE, "gauge", reader)
        for labels, entity in slices:
            family.add_labels(labels, entity)
        yield family
    for name, doc, reader in PER_GPU:
        family = FamilyTemplate(name, doc + _NOTE, "gauge", reader)
        for gpu in gpus:
            family.add_labels(_labels(gpu, None), Entity(gpu.index))
        yield family


dcgm_families = Builder(_dcgm)


def builders_for(names: str) -> tuple[Builder, ...]:
    """The family builders for a `--names` mode: dcgm serves dcgm-exporter's names as well as the native ones."""
    if names == "dcgm":
        return (native_families, exporter_families, dcgm_families)
    return (native_families, exporter_families)
