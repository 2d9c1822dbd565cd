"""dcgm-exporter's metric names and labels (`--names dcgm`), served beside the native families.

Dashboards and alerts written for dcgm-exporter keep working after a switch: its family names and
units (MHz, MiB, mJ, watts, degrees C, percentages where it reports them, 0..1 profiling ratios) and
its labels `gpu`, `UUID`, `pci_bus_id`, `device` (nvidiaN), `modelName`, `Hostname` (or `hostname`,
as its newer releases name it), `DCGM_FI_DRIVER_VERSION`, and on GPU-instance series `GPU_I_PROFILE`
(as DCGM names the instance: `1g.10gb` for a `1g.10gb+me` one) and `GPU_I_ID`. Built from the snapshot
like the native families, so it works with every source; `DcgmSelection` (from a counters CSV,
exporter.exposition.counters) picks the families.

Deliberate differences from dcgm-exporter: GPU-wide values (power, temperatures, clocks, energy, PCIe
replays, remapped rows, NVLink) appear once per GPU, without GPU_I_* labels, not repeated on every GPU
instance (README shows the PromQL join that repeats them); compute instances have no series (it reports
GPU instances only); FB_FREE is total minus used; counters keep its names (no `_total`) and are served
untyped, since OpenMetrics requires `_total` on a counter's samples. DCGM_FI_DEV_XID_ERRORS is, as in
dcgm-exporter, a gauge of the last XID seen on the GPU (0 before any), whatever instance raised it; the
native counter `mig_gpu_xid_errors_total` counts each one with the instance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from exporter.exposition.health import exporter_families, health_families
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
from exporter.mig.catalog import BOARDS
from exporter.model import Entity, Field, Gpu, GpuInstance, Snapshot

MIB = 1024**2
_NOTE = " (dcgm-exporter name; --names dcgm)"

# Where a family has series: every GPU instance (or the GPU itself where MIG is disabled), every GPU once,
# or only GPUs with MIG disabled.
SLICE, GPU, WHOLE = "slice", "gpu", "whole"


def _mib(size: float) -> float:
    """Bytes in whole MiB, as dcgm-exporter reports memory; NaN and infinities pass through."""
    mib = size / MIB
    return round(mib) if math.isfinite(mib) else mib


def _free_mib(values: EntityValues) -> float | None:
    used, total = values.get(Field.MEMORY_USED), values.get(Field.MEMORY_TOTAL)
    return None if used is None or total is None else _mib(total - used)


def _whole(factor: float) -> Callable[[float], float]:
    """`value * factor` in whole units, as DCGM reports these fields; NaN and infinities pass through."""

    def scale(value: float) -> float:
        scaled = value * factor
        return round(scaled) if math.isfinite(scaled) else scaled

    return scale


_PERCENT = _whole(100)  # NVML and DCGM report whole percents
_MHZ = _whole(1e-6)
# DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL is a rate despite its counter type: NVML's KiB counters' rise per second / 1000.
DCGM_NVLINK_UNIT = 1024 * 1000


@dataclass(frozen=True, slots=True)
class DcgmFamily:
    """One dcgm-exporter family: its DCGM field name, default type and help (its default-counters.csv), scope."""

    name: str
    type: str  # "gauge" or "counter", as dcgm-exporter's counters CSV declares it
    help: str
    scope: str  # SLICE, GPU or WHOLE
    reader: Reader


def _family(
    name: str, kind: str, doc: str, scope: str, fld: Field, *, transform: Callable[[float], float] | None = None
) -> DcgmFamily:
    return DcgmFamily(name, kind, doc, scope, EntityField(fld, transform))


FAMILIES: tuple[DcgmFamily, ...] = (
    _family(
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.", SLICE,
        Field.GR_ENGINE_ACTIVE,
    ),
    _family(
        "DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned.", SLICE,
        Field.SM_ACTIVE,
    ),
    _family(
        "DCGM_FI_PROF_SM_OCCUPANCY", "gauge", "The ratio of number of warps resident on an SM.", SLICE,
        Field.SM_OCCUPANCY,
    ),
    _family(
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.", SLICE,
        Field.TENSOR_ACTIVE,
    ),
    _family(
        "DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
        "Ratio of cycles the device memory interface is active sending or receiving data.", SLICE, Field.DRAM_ACTIVE,
    ),
    _family(
        "DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", SLICE, Field.MEMORY_USED, transform=_mib
    ),
    DcgmFamily(
        "DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", SLICE, EntityCompute(_free_mib),
    ),
    _family(
        "DCGM_FI_PROF_PCIE_TX_BYTES", "gauge",
        "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in "
        "bytes per second.", SLICE, Field.PCIE_TX_RATE,
    ),
    _family(
        "DCGM_FI_PROF_PCIE_RX_BYTES", "gauge",
        "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in "
        "bytes per second.", SLICE, Field.PCIE_RX_RATE,
    ),
    _family("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", WHOLE, Field.GPU_UTIL, transform=_PERCENT),
    _family(
        "DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", WHOLE, Field.MEMORY_COPY_UTIL,
        transform=_PERCENT
    ),
    _family("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", GPU, Field.SM_CLOCK, transform=_MHZ),
    _family(
        "DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", GPU, Field.MEMORY_CLOCK, transform=_MHZ
    ),
    _family("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", GPU, Field.MEMORY_TEMPERATURE),
    _family("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", GPU, Field.TEMPERATURE),
    _family("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", GPU, Field.POWER),
    _family(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).", GPU,
        Field.ENERGY, transform=_whole(1000),
    ),
    _family(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", GPU, Field.PCIE_REPLAYS
    ),
    _family(
        "DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", GPU, Field.ENCODER_UTIL, transform=_PERCENT
    ),
    _family(
        "DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", GPU, Field.DECODER_UTIL, transform=_PERCENT
    ),
    _family(
        "DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).", GPU, Field.MEMORY_RESERVED,
        transform=_mib
    ),
    _family(
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors",
        GPU, Field.REMAPPED_ROWS_UNCORRECTABLE,
    ),
    _family(
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors", GPU,
        Field.REMAPPED_ROWS_CORRECTABLE,
    ),
    _family(
        "DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed", GPU,
        Field.ROW_REMAP_FAILURE,
    ),
    _family(
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter",
        "Total number of NVLink bandwidth counters for all lanes.", GPU,
        Field.NVLINK_RATE, transform=_whole(1 / DCGM_NVLINK_UNIT),
    ),
    DcgmFamily(DCGM_NAME, "gauge", DCGM_HELP, GPU, LastXid()),  # the last XID (exposition/xids.py)
)  # fmt: skip
BY_NAME: Mapping[str, DcgmFamily] = {f.name: f for f in FAMILIES}

# dcgm-exporter's "label" rows: a field whose value becomes a label on every series.
LABELS: Mapping[str, Callable[[Gpu], str]] = {"DCGM_FI_DRIVER_VERSION": lambda gpu: gpu.driver_version}

# Fields dcgm-exporter's etc/default-counters.csv lists (some commented out) that this exporter does not read:
# a counters file may name them; each is then reported with reason "not_collected" in mig_exporter_field_supported.
NOT_COLLECTED: frozenset[str] = frozenset(
    {
        "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
        "DCGM_FI_DEV_POWER_VIOLATION",
        "DCGM_FI_DEV_THERMAL_VIOLATION",
        "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
        "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
        "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
        "DCGM_FI_DEV_RELIABILITY_VIOLATION",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "DCGM_FI_DEV_RETIRED_SBE",
        "DCGM_FI_DEV_RETIRED_DBE",
        "DCGM_FI_DEV_RETIRED_PENDING",
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_L0",
        "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
        "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
        "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
        "DCGM_FI_NVML_VERSION",
        "DCGM_FI_DEV_BRAND",
        "DCGM_FI_DEV_SERIAL",
        "DCGM_FI_DEV_OEM_INFOROM_VER",
        "DCGM_FI_DEV_ECC_INFOROM_VER",
        "DCGM_FI_DEV_POWER_INFOROM_VER",
        "DCGM_FI_DEV_INFOROM_IMAGE_VER",
        "DCGM_FI_DEV_VBIOS_VERSION",
        "DCGM_EXP_CLOCK_EVENTS_COUNT",
        "DCGM_EXP_XID_ERRORS_COUNT",
        "DCGM_EXP_GPU_HEALTH_STATUS",
        "DCGM_EXP_P2P_STATUS",
    }
)


@dataclass(frozen=True, slots=True)
class Chosen:
    """A family as a counters file chose it: its type and help there."""

    family: DcgmFamily
    type: str
    help: str


@dataclass(frozen=True, slots=True)
class DcgmSelection:
    """Which dcgm-exporter families and label fields to serve, and the named fields this exporter does not read."""

    families: tuple[Chosen, ...]
    labels: tuple[str, ...]
    not_collected: tuple[str, ...] = ()


ALL = DcgmSelection(tuple(Chosen(f, f.type, f.help) for f in FAMILIES), tuple(LABELS))


@dataclass(frozen=True, slots=True)
class DcgmOptions:
    """What the dcgm names depend on besides the snapshot: the node's name, its label, and the selection."""

    hostname: str = ""
    hostname_label: str = "Hostname"  # dcgm-exporter's newer releases name it `hostname`
    selection: DcgmSelection = field(default=ALL)


def dcgm_profile(gpu: Gpu, inst: GpuInstance) -> str:
    """The GPU instance as DCGM names it: `<slices>g.<profile MiB / 1024, rounded up>gb` (no `+me`)."""
    profile = BOARDS[gpu.board].profile_by_id(inst.profile_id) if gpu.board in BOARDS else None
    memory = profile.memory_bytes if profile is not None else inst.memory_total_bytes
    if memory <= 0:
        return inst.profile.removesuffix("+me")
    return f"{inst.compute_slices}g.{math.ceil(memory / MIB / 1024)}gb"


def _labeller(options: DcgmOptions) -> Callable[[Gpu, GpuInstance | None], dict[str, str]]:
    label_fields = [(name, LABELS[name]) for name in options.selection.labels]

    def labels(gpu: Gpu, inst: GpuInstance | None) -> dict[str, str]:
        out = {
            "gpu": str(gpu.index),
            "UUID": gpu.uuid,
            "pci_bus_id": gpu.pci_bus_id,
            "device": f"nvidia{gpu.index}",
            "modelName": gpu.model,
        }
        if inst is not None:
            out |= {"GPU_I_PROFILE": dcgm_profile(gpu, inst), "GPU_I_ID": str(inst.gi)}
        if options.hostname:
            out[options.hostname_label] = options.hostname
        for name, value in label_fields:
            out[name] = value(gpu)
        return out

    return labels


def dcgm_families(options: DcgmOptions = DcgmOptions()) -> Builder:
    """The selected fields under dcgm-exporter's names, units and labels."""
    labels = _labeller(options)

    def build(snapshot: Snapshot) -> Iterator[AnyFamily]:
        gpus = snapshot.topology.gpus
        slices = [
            (labels(gpu, inst), Entity(gpu.index, inst.gi if inst is not None else None))
            for gpu in gpus
            for inst in (gpu.instances if gpu.mig_enabled else (None,))
        ]
        whole = [(labels(gpu, None), Entity(gpu.index)) for gpu in gpus]
        for chosen in options.selection.families:
            family = chosen.family
            kind = "gauge" if chosen.type == "gauge" else "unknown"  # counters keep dcgm-exporter's exact names
            template = FamilyTemplate(family.name, chosen.help + _NOTE, kind, family.reader)
            if family.scope == SLICE:
                series = slices
            else:  # GPU: every GPU once; WHOLE: only GPUs with MIG disabled
                series = [s for s, gpu in zip(whole, gpus, strict=True) if family.scope == GPU or not gpu.mig_enabled]
            for lbl, entity in series:
                template.add_labels(lbl, entity)
            yield template

    return Builder(build)


def builders_for(names: str, dcgm: DcgmOptions | None = None) -> tuple[Builder, ...]:
    """The family builders for a `--names` mode: dcgm serves dcgm-exporter's names as well as the native ones."""
    if names == "dcgm":
        options = dcgm or DcgmOptions()
        return (native_families, exporter_families_for(options), dcgm_families(options))
    return (native_families, exporter_families)


def exporter_families_for(options: DcgmOptions) -> Builder:
    """The health families, with the counters file's fields this exporter does not read named as such."""
    if not options.selection.not_collected:
        return exporter_families
    return health_families(dict.fromkeys(options.selection.not_collected, "not_collected"))
