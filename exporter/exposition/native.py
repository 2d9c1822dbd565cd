"""The metric contract's native families: GPUs, GPU instances and compute instances (README's metric table).

Declared once per topology (series.py): one series per entity that can have a value; a value the
source did not read in a sample leaves its series out of that sample's exposition. A new field is a
family of the contract plus one entry in the tables below.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.contract import families as fam
from exporter.exposition.series import (
    CONSTANT,
    ENTITY_FIELDS,
    AnyFamily,
    Builder,
    DynamicFamily,
    EntityField,
    EntityFieldOr,
    FamilyTemplate,
)
from exporter.exposition.xids import xid_rows
from exporter.model import Entity, Field, Gpu, GpuInstance, Snapshot, Topology

# GPU-wide values, read on the GPU entity of every GPU.
GPU_FIELDS: dict[Field, fam.Family] = {
    Field.MEMORY_TOTAL: fam.GPU_MEMORY_TOTAL,
    Field.MEMORY_USED: fam.GPU_MEMORY_USED,
    Field.POWER: fam.GPU_POWER,
    Field.TEMPERATURE: fam.GPU_TEMPERATURE,
    Field.SM_CLOCK: fam.GPU_SM_CLOCK,
    Field.MEMORY_CLOCK: fam.GPU_MEMORY_CLOCK,
    Field.MEMORY_TEMPERATURE: fam.GPU_MEMORY_TEMPERATURE,
    Field.ENERGY: fam.GPU_ENERGY,
    Field.PCIE_REPLAYS: fam.GPU_PCIE_REPLAYS,
    Field.MEMORY_RESERVED: fam.GPU_MEMORY_RESERVED,
    Field.ROW_REMAP_FAILURE: fam.GPU_ROW_REMAP_FAILURE,
    Field.NVLINK_RATE: fam.GPU_NVLINK,
    Field.ENCODER_UTIL: fam.GPU_ENCODER_UTILIZATION,
    Field.DECODER_UTIL: fam.GPU_DECODER_UTILIZATION,
}
# Remapped rows: one family, a series per kind.
REMAPPED_ROWS: dict[str, Field] = {
    "correctable": Field.REMAPPED_ROWS_CORRECTABLE,
    "uncorrectable": Field.REMAPPED_ROWS_UNCORRECTABLE,
}
# Read on the GPU entity only where MIG is disabled (with MIG on, on the GPU instances).
WHOLE_GPU_FIELDS: dict[Field, fam.Family] = {
    **fam.GPU_ACTIVITY,
    Field.GPU_UTIL: fam.GPU_UTILIZATION,
    Field.MEMORY_COPY_UTIL: fam.GPU_MEMORY_COPY_UTILIZATION,
    **fam.GPU_PCIE,
}
# Read on every GPU instance.
INSTANCE_FIELDS: dict[Field, fam.Family] = {
    **fam.INSTANCE_ACTIVITY,
    Field.MEMORY_USED: fam.INSTANCE_MEMORY_USED,
    **fam.INSTANCE_PCIE,
}


def _native(snapshot: Snapshot) -> Iterator[AnyFamily]:
    topology = snapshot.topology
    yield from _gpu_families(topology)
    yield from _instance_families(topology)
    yield from _compute_instance_families(topology)
    yield DynamicFamily.of(fam.GPU_XID_ERRORS, xid_rows)


native_families = Builder(_native)


def _gpu_labels(gpu: Gpu) -> tuple[str, str]:
    return str(gpu.index), gpu.uuid


def _gpu_families(topology: Topology) -> Iterator[FamilyTemplate]:
    info = FamilyTemplate.of(fam.GPU_INFO, CONSTANT)
    for gpu in topology.gpus:
        info.add([*_gpu_labels(gpu), gpu.model, gpu.driver_version, gpu.mig_mode], 1)
    yield info
    for fld, family in GPU_FIELDS.items():
        scalar = FamilyTemplate.of(family, EntityField(fld))
        for gpu in topology.gpus:
            scalar.add(_gpu_labels(gpu), Entity(gpu.index))
        yield scalar
    rows = FamilyTemplate.of(fam.GPU_REMAPPED_ROWS, ENTITY_FIELDS)
    for gpu in topology.gpus:
        for kind, fld in REMAPPED_ROWS.items():
            rows.add([*_gpu_labels(gpu), kind], (Entity(gpu.index), fld))
    yield rows
    for fld, family in WHOLE_GPU_FIELDS.items():  # whole-GPU activity and I/O only where MIG is disabled
        activity = FamilyTemplate.of(family, EntityField(fld))
        for gpu in topology.gpus:
            if not gpu.mig_enabled:
                activity.add(_gpu_labels(gpu), Entity(gpu.index))
        yield activity


def _instance_key(gpu: Gpu, inst: GpuInstance) -> tuple[str, str, str]:
    return str(gpu.index), str(inst.gi), inst.profile


def _instance_families(topology: Topology) -> Iterator[FamilyTemplate]:
    instances = list(topology.iter_instances())
    info = FamilyTemplate.of(fam.INSTANCE_INFO, CONSTANT)
    for gpu, inst in instances:
        start = "" if inst.placement_start is None else str(inst.placement_start)
        info.add([str(gpu.index), gpu.uuid, str(inst.gi), inst.profile, start, str(inst.placement_size)], 1)
    yield info
    compute = FamilyTemplate.of(fam.INSTANCE_COMPUTE_SLICES, CONSTANT)
    memory = FamilyTemplate.of(fam.INSTANCE_MEMORY_SLICES, CONSTANT)
    for gpu, inst in instances:
        compute.add(_instance_key(gpu, inst), inst.compute_slices)
        memory.add(_instance_key(gpu, inst), inst.memory_slices)
    yield from (compute, memory)
    for fld, family in INSTANCE_FIELDS.items():
        values = FamilyTemplate.of(family, EntityField(fld))
        for gpu, inst in instances:
            values.add(_instance_key(gpu, inst), Entity(gpu.index, inst.gi))
        yield values
    # The source's total where it reads one, else the profile's (every sampled GPU has this series).
    total = FamilyTemplate.of(fam.INSTANCE_MEMORY_TOTAL, EntityFieldOr(Field.MEMORY_TOTAL))
    for gpu, inst in instances:
        total.add(_instance_key(gpu, inst), (Entity(gpu.index, inst.gi), inst.memory_total_bytes))
    yield total


def _compute_instance_families(topology: Topology) -> Iterator[FamilyTemplate]:
    cis = list(topology.iter_compute_instances())
    info = FamilyTemplate.of(fam.COMPUTE_INSTANCE_INFO, CONSTANT)
    for gpu, inst, ci in cis:
        info.add([str(gpu.index), str(inst.gi), str(ci.ci), inst.profile, ci.profile, ci.mig_uuid], 1)
    yield info
    for fld, family in fam.COMPUTE_INSTANCE_ACTIVITY.items():
        activity = FamilyTemplate.of(family, EntityField(fld))
        for gpu, inst, ci in cis:
            activity.add([str(gpu.index), str(inst.gi), str(ci.ci), inst.profile], Entity(gpu.index, inst.gi, ci.ci))
        yield activity
