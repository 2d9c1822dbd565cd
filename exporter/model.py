"""Pure data types: the node's MIG topology, one sample of it, and the published snapshot.

Nothing here does I/O. Every type is frozen so a snapshot can be shared between the
sampler and any number of concurrent scrapes without locks.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field


class Field(enum.Enum):
    """A quantity a source can read; `value` is the suffix used in metric names."""

    GR_ENGINE_ACTIVE = "gr_engine_active"
    SM_ACTIVE = "sm_active"
    SM_OCCUPANCY = "sm_occupancy"
    TENSOR_ACTIVE = "tensor_active"
    DRAM_ACTIVE = "dram_active"
    MEMORY_USED = "memory_used"
    MEMORY_TOTAL = "memory_total"
    XID_ERRORS = "xid_errors"  # on the GPU entity: XIDs counted since start, all scopes (support shows here)
    POWER = "power"
    TEMPERATURE = "temperature"
    # GPU-wide health, clocks, energy and I/O (dcgm-exporter's default counters), in base units
    SM_CLOCK = "sm_clock"  # hertz
    MEMORY_CLOCK = "memory_clock"  # hertz
    MEMORY_TEMPERATURE = "memory_temperature"  # degrees Celsius
    ENERGY = "energy"  # joules since the driver loaded (a counter)
    PCIE_REPLAYS = "pcie_replays"  # PCIe replays (a counter)
    MEMORY_RESERVED = "memory_reserved"  # bytes the driver reserves
    REMAPPED_ROWS_CORRECTABLE = "remapped_rows_correctable"  # rows remapped for correctable errors (a counter)
    REMAPPED_ROWS_UNCORRECTABLE = "remapped_rows_uncorrectable"  # ... for uncorrectable errors (a counter)
    ROW_REMAP_FAILURE = "row_remap_failure"  # 1 when a row remapping failed
    NVLINK_RATE = "nvlink_rate"  # NVLink data received and transmitted, all links, bytes per second
    GPU_UTIL = "gpu_util"  # ratio of time a kernel ran (MIG disabled)
    MEMORY_COPY_UTIL = "memory_copy_util"  # ratio of time device memory was read or written (MIG disabled)
    ENCODER_UTIL = "encoder_util"  # ratio
    DECODER_UTIL = "decoder_util"  # ratio
    # Per GPU instance (or the GPU with MIG disabled) where the source scopes them
    PCIE_TX_RATE = "pcie_tx_rate"  # bytes per second
    PCIE_RX_RATE = "pcie_rx_rate"  # bytes per second

    # Members are singletons, so identity is the right hash; Enum's own hashes the name in Python
    # code, which every value lookup of a sample and of the exposition would pay.
    __hash__ = object.__hash__


ACTIVITY_FIELDS: tuple[Field, ...] = (
    Field.GR_ENGINE_ACTIVE,
    Field.SM_ACTIVE,
    Field.SM_OCCUPANCY,
    Field.TENSOR_ACTIVE,
    Field.DRAM_ACTIVE,
)


@dataclass(frozen=True, slots=True)
class ComputeInstance:
    """One compute instance inside a GPU instance: what CUDA sees as one MIG device."""

    gi: int
    ci: int
    profile: str  # CI profile name, e.g. "1c.3g.40gb", or the GI's name when it spans the GI
    compute_slices: int
    mig_uuid: str


@dataclass(frozen=True, slots=True)
class GpuInstance:
    """One GPU instance (a MIG slice): a contiguous run of memory slices and its compute slices."""

    gi: int
    profile: str  # e.g. "3g.40gb"
    profile_id: int  # NVML GPU-instance profile ID, e.g. 9 for 3g
    placement_start: int | None  # in memory slices, 0..7; None where the source cannot read it (DCGM)
    placement_size: int  # in memory slices
    compute_slices: int  # of 7
    memory_slices: int  # of 8
    memory_total_bytes: int
    compute_instances: tuple[ComputeInstance, ...] = ()


@dataclass(frozen=True, slots=True)
class Gpu:
    """One physical GPU and, when MIG is enabled, its GPU instances."""

    index: int
    uuid: str
    model: str  # the driver's name, e.g. "NVIDIA H100 80GB HBM3"
    board: str | None  # catalog key such as "h100-80gb"; None when the model is unknown
    driver_version: str
    mig_enabled: bool
    memory_total_bytes: int
    mig_pending: bool | None = None  # pending MIG mode, when the source can read it
    pci_bus_id: str = ""  # e.g. "00000000:1B:00.0"; empty where the source cannot read it
    instances: tuple[GpuInstance, ...] = ()

    @property
    def mig_mode(self) -> str:
        """The `mig_mode` label value: enabled, disabled, or the pending change."""
        current = "enabled" if self.mig_enabled else "disabled"
        if self.mig_pending is not None and self.mig_pending != self.mig_enabled:
            pending = "enabled" if self.mig_pending else "disabled"
            return f"{current} (pending {pending})"
        return current

    def instance(self, gi: int) -> GpuInstance | None:
        """The GPU instance with this id, if it exists."""
        for inst in self.instances:
            if inst.gi == gi:
                return inst
        return None


@dataclass(frozen=True, slots=True)
class Topology:
    """Every GPU on the node with its MIG layout, as discovered at one moment."""

    gpus: tuple[Gpu, ...] = ()

    def gpu(self, index: int) -> Gpu | None:
        """The GPU with this index, if present."""
        for g in self.gpus:
            if g.index == index:
                return g
        return None

    def iter_instances(self) -> Iterator[tuple[Gpu, GpuInstance]]:
        """Every (GPU, GPU instance) pair, in index order."""
        for g in self.gpus:
            for inst in g.instances:
                yield g, inst

    def iter_compute_instances(self) -> Iterator[tuple[Gpu, GpuInstance, ComputeInstance]]:
        """Every (GPU, GPU instance, compute instance) triple, in index order."""
        for g, inst in self.iter_instances():
            for ci in inst.compute_instances:
                yield g, inst, ci


@dataclass(frozen=True, slots=True, order=True)
class Entity:
    """What a value belongs to: a GPU (gi and ci None), a GPU instance (ci None) or a compute instance."""

    gpu: int
    gi: int | None = None
    ci: int | None = None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """Values read for one GPU and its instances in one sampling cycle.

    `values` maps an entity to the fields read for it (ratios 0..1, bytes, watts, degrees
    Celsius). A field the source cannot read is absent from `values` and named, with the
    reason, in `unsupported`; it is never reported as zero.
    """

    gpu: int
    values: Mapping[Entity, Mapping[Field, float]] = field(default_factory=dict)
    unsupported: Mapping[Field, str] = field(default_factory=dict)

    def get(self, entity: Entity, fld: Field) -> float | None:
        """The value of one field for one entity, or None when it was not read."""
        return self.values.get(entity, {}).get(fld)


@dataclass(frozen=True, slots=True)
class XidKey:
    """Where an XID error was counted: its GPU, its code and, on MIG, the instance that raised it.

    `gi` and `ci` are None for a GPU-wide XID; `ci` alone is None for one raised by a GPU instance.
    """

    gpu: int
    xid: int
    gi: int | None = None
    ci: int | None = None

    def sort_key(self) -> tuple[int, int, int, int]:
        """GPU, XID, then GPU-wide before instance-scoped."""
        return (self.gpu, self.xid, -1 if self.gi is None else self.gi, -1 if self.ci is None else self.ci)


@dataclass(frozen=True, slots=True)
class XidErrors:
    """XID errors seen since the exporter started: counts by XidKey, and the last XID per GPU index.

    Cumulative for the life of the process, kept apart from each GPU's sample so that a GPU whose sampling
    fails after an XID (79, fallen off the bus) still shows it.
    """

    counts: Mapping[XidKey, int] = field(default_factory=dict)
    last: Mapping[int, int] = field(default_factory=dict)


NO_XIDS = XidErrors()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scrape reports: immutable, published whole by the sampler."""

    source: str
    topology: Topology
    samples: Mapping[int, GpuSample]  # by GPU index; a GPU whose sample failed is absent
    timestamp: float  # wall-clock time the sampling cycle finished
    duration: float  # seconds the sampling cycle took
    source_up: bool
    errors: Mapping[tuple[str, str], int]  # cumulative, by (stage, reason)
    stale_gpus: frozenset[int] = frozenset()
    topology_changes: int = 0  # cumulative: GPUs whose layout changed, appeared or disappeared at a discovery
    xids: XidErrors = NO_XIDS  # from a source that counts XID errors (XidSource)
