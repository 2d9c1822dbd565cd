"""DCGM's entities and field values, turned into the model: field numbers, value decoding, hierarchy mapping,
sample assembly.

Pure functions over what the bindings return (ctypes structs read by attribute); the calls
into DCGM live in exporter.sources.dcgm.source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from exporter.mig.catalog import BOARDS, Board
from exporter.model import ComputeInstance, Entity, Field, Gpu, GpuInstance, GpuSample

MIB = 1024**2

# Entity groups (dcgm_fields.DCGM_FE_*); stable numbers in every DCGM release.
FE_GPU = 1
FE_GPU_I = 4
FE_GPU_CI = 5

# Field IDs by number: DCGM 4.6 renamed the constants, older releases have only the old names.
FI_NVML_INDEX = 52
FI_UUID = 54
FI_GPU_TEMP = 150
FI_POWER = 155
FI_XID_ERRORS = 230  # the last XID on the entity: a GPU when GPU-wide, else the GPU_I or GPU_CI that raised it
FI_FB_TOTAL = 250
FI_FB_FREE = 251
FI_FB_USED = 252
FI_GR_ENGINE_ACTIVE = 1001
FI_SM_ACTIVE = 1002
FI_SM_OCCUPANCY = 1003
FI_PIPE_TENSOR_ACTIVE = 1004
FI_DRAM_ACTIVE = 1005

PROFILING_FIELDS: dict[int, Field] = {
    FI_GR_ENGINE_ACTIVE: Field.GR_ENGINE_ACTIVE,
    FI_SM_ACTIVE: Field.SM_ACTIVE,
    FI_SM_OCCUPANCY: Field.SM_OCCUPANCY,
    FI_PIPE_TENSOR_ACTIVE: Field.TENSOR_ACTIVE,
    FI_DRAM_ACTIVE: Field.DRAM_ACTIVE,
}
MEMORY_FIELDS: tuple[int, ...] = (FI_FB_TOTAL, FI_FB_FREE, FI_FB_USED)
INSTANCE_FIELDS: tuple[int, ...] = (*PROFILING_FIELDS, *MEMORY_FIELDS)
GPU_ONLY_FIELDS: dict[int, Field] = {FI_POWER: Field.POWER, FI_GPU_TEMP: Field.TEMPERATURE}
GPU_FIELDS: list[int] = [*GPU_ONLY_FIELDS, *MEMORY_FIELDS]

# GPU-wide health, clocks, energy and I/O (dcgm-exporter's default counters), read on GPU entities only: on an
# instance entity they repeat the parent's value. Field number -> (field, scale to base units). Watched apart
# from the fields above, so a DCGM that refuses one of them (an older release) costs these alone.
KIB = 1024
HEALTH_FIELDS: dict[int, tuple[Field, float]] = {
    100: (Field.SM_CLOCK, 1e6),  # DCGM_FI_DEV_SM_CLOCK, MHz
    101: (Field.MEMORY_CLOCK, 1e6),  # DCGM_FI_DEV_MEM_CLOCK, MHz
    140: (Field.MEMORY_TEMPERATURE, 1.0),  # DCGM_FI_DEV_MEMORY_TEMP, C
    156: (Field.ENERGY, 1e-3),  # DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, mJ
    202: (Field.PCIE_REPLAYS, 1.0),  # DCGM_FI_DEV_PCIE_REPLAY_COUNTER
    203: (Field.GPU_UTIL, 0.01),  # DCGM_FI_DEV_GPU_UTIL, %; not supported with MIG on
    204: (Field.MEMORY_COPY_UTIL, 0.01),  # DCGM_FI_DEV_MEM_COPY_UTIL, %; not supported with MIG on
    206: (Field.ENCODER_UTIL, 0.01),  # DCGM_FI_DEV_ENC_UTIL, %
    207: (Field.DECODER_UTIL, 0.01),  # DCGM_FI_DEV_DEC_UTIL, %
    253: (Field.MEMORY_RESERVED, MIB),  # DCGM_FI_DEV_FB_RESERVED, MiB
    393: (Field.REMAPPED_ROWS_UNCORRECTABLE, 1.0),  # DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS
    394: (Field.REMAPPED_ROWS_CORRECTABLE, 1.0),  # DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS
    395: (Field.ROW_REMAP_FAILURE, 1.0),  # DCGM_FI_DEV_ROW_REMAP_FAILURE
    # DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL: the rise per second of NVML's data RX + TX counters (KiB) / 1000
    449: (Field.NVLINK_RATE, KIB * 1000),
}
# Profiling I/O rates (bytes per second), read on GPU instances and MIG-disabled GPUs, watched apart from the
# activity ratios so a GPU whose profiling module cannot add them keeps its activity.
IO_FIELDS: dict[int, Field] = {
    1009: Field.PCIE_TX_RATE,  # DCGM_FI_PROF_PCIE_TX_BYTES
    1010: Field.PCIE_RX_RATE,  # DCGM_FI_PROF_PCIE_RX_BYTES
}


# Per-value statuses that mean the entity itself is gone (a re-partition), not that its value is missing.
GONE = frozenset({"instance_not_found", "compute_instance_not_found"})


@dataclass(frozen=True, slots=True)
class Reading:
    """One field value (a number, or text for string fields), or why there is none."""

    value: float | str | None
    reason: str = ""

    @property
    def number(self) -> float | None:
        """The value when it is a number."""
        return self.value if isinstance(self.value, float | int) else None


class ValueDecoder:
    """Decodes DCGM field values, in one place: per-value statuses, field types and blank sentinels.

    Built from the bindings' own modules (dcgm_structs, dcgm_fields, dcgmvalue), so it follows their
    constants. A value with a bad status reads as that status (`not_supported`, `no_data`, ...); a blank
    sentinel as what it stands for (`no_data`, `not_found`, `not_supported`, `no_permission`).
    """

    def __init__(self, structs: ModuleType, fields: ModuleType, blanks: ModuleType) -> None:
        self._ok = structs.DCGM_ST_OK
        self._names = {
            value: name.removeprefix("DCGM_ST_").lower()
            for name, value in vars(structs).items()
            if name.startswith("DCGM_ST_") and isinstance(value, int)
        }
        self._double, self._int64, self._string = fields.DCGM_FT_DOUBLE, fields.DCGM_FT_INT64, fields.DCGM_FT_STRING
        self._b = blanks
        self._text_blanks = {
            blanks.DCGM_STR_BLANK: "no_data",
            blanks.DCGM_STR_NOT_FOUND: "not_found",
            blanks.DCGM_STR_NOT_SUPPORTED: "not_supported",
            blanks.DCGM_STR_NOT_PERMISSIONED: "no_permission",
        }

    def status(self, code: int) -> str:
        """The reason token of a DCGM_ST_* code (`profiling_not_supported`, `gpu_is_lost`, ...)."""
        return self._names.get(code, f"status_{code}")

    def decode(self, fv: Any) -> Reading:
        """One dcgmFieldValue_v1/v2."""
        status = int(fv.status)
        if status != self._ok:
            return Reading(None, self.status(status))
        kind = chr(int(fv.fieldType))
        if kind == self._string:
            text = str(fv.value.str)
            if self._b.DCGM_STR_IS_BLANK(text):
                return Reading(None, self._text_blanks.get(text, "no_data"))
            return Reading(text)
        if kind == self._double:
            number, blank = float(fv.value.dbl), self._b.DCGM_FP64_BLANK
            is_blank = self._b.DCGM_FP64_IS_BLANK(number)
        elif kind == self._int64:
            integer = int(fv.value.i64)
            number, blank, is_blank = float(integer), self._b.DCGM_INT64_BLANK, self._b.DCGM_INT64_IS_BLANK(integer)
        else:
            return Reading(None, f"unexpected_type_{kind}")
        return Reading(None, blank_reason(number - blank)) if is_blank else Reading(number)


@dataclass(frozen=True, slots=True)
class GpuEntities:
    """DCGM entity IDs of one GPU and its instances, as mapped at discovery."""

    gpu_id: int
    mig_enabled: bool
    gis: Mapping[int, int]  # NVML GI id -> GPU_I entity ID
    cis: Mapping[tuple[int, int], int]  # (GI id, CI id) -> GPU_CI entity ID
    signature: tuple[tuple[int, ...], ...]  # this GPU's hierarchy entries, to notice a re-partition


def profiled_entities(gpu: GpuEntities) -> list[tuple[int, int]]:
    """Entities whose activity is watched: a MIG GPU's instances, or the GPU itself with MIG disabled."""
    entities = [] if gpu.mig_enabled else [(FE_GPU, gpu.gpu_id)]
    entities += [(FE_GPU_I, e) for e in gpu.gis.values()]
    entities += [(FE_GPU_CI, e) for e in gpu.cis.values()]
    return entities


def xid_scopes(gpu: GpuEntities) -> dict[tuple[int, int], tuple[int | None, int | None]]:
    """Every entity DCGM records XIDs on for this GPU, with the NVML (gi, ci) it stands for (None: GPU-wide)."""
    scopes: dict[tuple[int, int], tuple[int | None, int | None]] = {(FE_GPU, gpu.gpu_id): (None, None)}
    scopes.update({(FE_GPU_I, e): (gi, None) for gi, e in gpu.gis.items()})
    scopes.update({(FE_GPU_CI, e): (gi, ci) for (gi, ci), e in gpu.cis.items()})
    return scopes


def blank_reason(offset: float) -> str:
    """Why a value is a blank sentinel: dcgmvalue's BLANK, NOT_FOUND, NOT_SUPPORTED, NOT_PERMISSIONED."""
    return {0: "no_data", 1: "not_found", 2: "not_supported", 3: "no_permission"}.get(int(offset), "no_data")


def hierarchy_signatures(entries: Iterable[Any]) -> dict[int, tuple[tuple[int, ...], ...]]:
    """Each GPU's hierarchy entries as plain tuples, keyed by the DCGM ID of the GPU they belong to."""
    gi_parent: dict[int, int] = {}
    rows: list[tuple[int, tuple[int, ...]]] = []
    listed = list(entries)
    for e in listed:
        if int(e.entity.entityGroupId) == FE_GPU_I:
            gi_parent[int(e.entity.entityId)] = int(e.parent.entityId)
    for e in listed:
        group, entity_id = int(e.entity.entityGroupId), int(e.entity.entityId)
        gpu_id = gi_parent.get(entity_id) if group == FE_GPU_I else gi_parent.get(int(e.parent.entityId))
        if gpu_id is None:
            continue
        info = e.info
        rows.append(
            (
                gpu_id,
                (
                    group,
                    entity_id,
                    int(info.nvmlInstanceId),
                    int(info.nvmlComputeInstanceId),
                    int(info.nvmlMigProfileId),
                    int(info.nvmlProfileSlices),
                ),
            )
        )
    out: dict[int, list[tuple[int, ...]]] = {}
    for gpu_id, row in rows:
        out.setdefault(gpu_id, []).append(row)
    return {gpu_id: tuple(sorted(items)) for gpu_id, items in out.items()}


def gpu_instance(
    board: Board | None, entry: Any, children: Sequence[Any], live: Mapping[tuple[int, int, int], object]
) -> GpuInstance:
    """A GPU instance from its hierarchy entry and its compute-instance entries."""
    info = entry.info
    profile_id = int(info.nvmlMigProfileId)
    compute_slices = int(info.nvmlProfileSlices)
    profile = board.profile_by_id(profile_id) if board else None
    # Unknown board: IDs and slice shapes are the same on every MIG board, names are not.
    shape = profile or next(
        (p for b in BOARDS.values() if (p := b.profile_by_id(profile_id)) is not None),
        None,
    )
    name = profile.name if profile else f"{compute_slices}g.id{profile_id}"
    memory_slices = shape.memory_slices if shape else compute_slices
    gi = int(info.nvmlInstanceId)
    cis = []
    for child in sorted(children, key=lambda c: int(c.info.nvmlComputeInstanceId)):
        ci_slices = int(child.info.nvmlProfileSlices)
        uuid = live.get((FE_GPU_CI, int(child.entity.entityId), FI_UUID))
        cis.append(
            ComputeInstance(
                gi=gi,
                ci=int(child.info.nvmlComputeInstanceId),
                profile=name if ci_slices == compute_slices else f"{ci_slices}c.{name}",
                compute_slices=ci_slices,
                mig_uuid=uuid if isinstance(uuid, str) else "",
            )
        )
    return GpuInstance(
        gi=gi,
        profile=name,
        profile_id=profile_id,
        placement_start=None,  # DCGM does not report placements
        placement_size=memory_slices,
        compute_slices=compute_slices,
        memory_slices=memory_slices,
        memory_total_bytes=profile.memory_bytes if profile else 0,
        compute_instances=tuple(cis),
    )


class Assembler:
    """Builds one GPU's GpuSample from its readings; a field absent on every entity is named unsupported."""

    def __init__(
        self,
        readings: Mapping[tuple[int, int, int], Reading],
        profiling_reason: str,
        health_reason: str = "",
        io_reason: str = "",
    ) -> None:
        self.readings = readings
        self.profiling_reason = profiling_reason
        self.health_reason = health_reason  # why the health fields could not be watched, if they could not
        self.io_reason = io_reason or profiling_reason
        self.values: dict[Entity, dict[Field, float]] = {}
        self.reasons: dict[Field, Counter[str]] = {}

    def take(self, entity: Entity, where: tuple[int, int], field_id: int, fld: Field, scale: float = 1.0) -> None:
        reading = self.readings.get((*where, field_id), Reading(None, "no_data"))
        number = reading.number
        if number is None:
            self.reasons.setdefault(fld, Counter())[reading.reason or "unexpected_text"] += 1
        else:
            self.values.setdefault(entity, {})[fld] = number * scale

    def memory(self, entity: Entity, where: tuple[int, int]) -> None:
        """Total and used memory; used falls back to total minus free when only FB_USED is blank."""
        self.take(entity, where, FI_FB_TOTAL, Field.MEMORY_TOTAL, MIB)
        used = self.readings.get((*where, FI_FB_USED), Reading(None)).number
        free = self.readings.get((*where, FI_FB_FREE), Reading(None)).number
        total = self.values.get(entity, {}).get(Field.MEMORY_TOTAL)
        if used is None and free is not None and total is not None:
            self.values[entity][Field.MEMORY_USED] = total - free * MIB
        else:
            self.take(entity, where, FI_FB_USED, Field.MEMORY_USED, MIB)

    def activity(self, entity: Entity, where: tuple[int, int]) -> None:
        for field_id, fld in PROFILING_FIELDS.items():
            if self.profiling_reason:
                self.reasons.setdefault(fld, Counter())[self.profiling_reason] += 1
            else:
                self.take(entity, where, field_id, fld)

    def refused(self, fields: Iterable[Field], reason: str) -> None:
        for fld in fields:
            self.reasons.setdefault(fld, Counter())[reason] += 1

    def health(self, entity: Entity, where: tuple[int, int]) -> None:
        if self.health_reason:
            self.refused((fld for fld, _ in HEALTH_FIELDS.values()), self.health_reason)
            return
        for field_id, (fld, scale) in HEALTH_FIELDS.items():
            self.take(entity, where, field_id, fld, scale)

    def io(self, entity: Entity, where: tuple[int, int]) -> None:
        if self.io_reason:
            self.refused(IO_FIELDS.values(), self.io_reason)
            return
        for field_id, fld in IO_FIELDS.items():
            self.take(entity, where, field_id, fld)

    def sample(self, gpu: Gpu, mapped: GpuEntities) -> GpuSample:
        whole = Entity(gpu.index)
        where = (FE_GPU, mapped.gpu_id)
        self.memory(whole, where)
        for field_id, fld in GPU_ONLY_FIELDS.items():
            self.take(whole, where, field_id, fld)
        self.health(whole, where)
        if not mapped.mig_enabled:
            self.activity(whole, where)
            self.io(whole, where)
        for gi, entity_id in mapped.gis.items():
            self.activity(Entity(gpu.index, gi), (FE_GPU_I, entity_id))
            self.io(Entity(gpu.index, gi), (FE_GPU_I, entity_id))
            self.memory(Entity(gpu.index, gi), (FE_GPU_I, entity_id))
        for (gi, ci), entity_id in mapped.cis.items():
            self.activity(Entity(gpu.index, gi, ci), (FE_GPU_CI, entity_id))
        present = {f for values in self.values.values() for f in values}
        unsupported = {f: counts.most_common(1)[0][0] for f, counts in self.reasons.items() if f not in present}
        return GpuSample(gpu=gpu.index, values=self.values, unsupported=unsupported)
