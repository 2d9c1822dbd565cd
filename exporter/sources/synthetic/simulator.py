"""A deterministic simulator of a MIG-partitioned GPU node: topology and truth at any instant.

It is the backing store of the synthetic source and of the fake NVML and DCGM libraries
used in tests. Activity is modelled per compute instance; a GPU instance reads the
compute-slice-weighted mean over its compute slices, as the hardware reports it (one busy
compute instance out of three equal ones reads 1/3 on the GPU instance).
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from exporter.mig.catalog import COMPUTE_SLICES
from exporter.model import (
    ACTIVITY_FIELDS,
    ComputeInstance,
    Entity,
    Field,
    Gpu,
    GpuInstance,
    GpuSample,
    Topology,
)
from exporter.sources.synthetic.patterns import evaluate
from exporter.sources.synthetic.scenario import ComputeInstanceSpec, GpuSpec, InstanceSpec, Scenario
from exporter.units import GIB

IDLE_POWER_WATTS = 72.0
MAX_POWER_WATTS = 700.0
IDLE_TEMPERATURE_C = 31.0
MAX_TEMPERATURE_C = 78.0
IDLE_MEMORY_TEMPERATURE_C = 34.0
MAX_MEMORY_TEMPERATURE_C = 85.0
IDLE_SM_CLOCK_MHZ = 345
MAX_SM_CLOCK_MHZ = 1980
MEMORY_CLOCK_MHZ = 2619  # HBM3 on H100 SXM
RESERVED_BYTES = 512 * 1024**2  # memory the driver keeps for itself on a whole GPU
BOOT_TIME = 1_700_000_000.0  # when the simulated driver loaded: energy and the other counters count from here
PCIE_TX_MAX = 8e9  # bytes per second a whole GPU transmits at full activity
PCIE_RX_MAX = 20e9
NVLINK_MAX = 20e9  # bytes per second of NVLink traffic of a whole-GPU job at full activity (none with MIG)
KIB = 1024
NVLINK_UNIT = 1000 * KIB

_RATIO_FIELDS = {
    Field.SM_ACTIVE: "sm_active",
    Field.SM_OCCUPANCY: "sm_occupancy",
    Field.TENSOR_ACTIVE: "tensor_active",
    Field.DRAM_ACTIVE: "dram_active",
}


def _uuid(*parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:16]
    return str(uuidlib.UUID(bytes=digest))


def _activity_fields(level: float, ratios: Mapping[str, float]) -> dict[Field, float]:
    """All activity ratios for one workload at graphics-engine activity `level`."""
    values = {Field.GR_ENGINE_ACTIVE: level}
    for fld, key in _RATIO_FIELDS.items():
        values[fld] = level * ratios[key]
    return values


def pcie_rates(level: float, share: float) -> dict[Field, float]:
    """PCIe bytes per second of an entity holding `share` of the GPU's compute slices at activity `level`."""
    return {
        Field.PCIE_TX_RATE: float(round(level * share * PCIE_TX_MAX)),
        Field.PCIE_RX_RATE: float(round(level * share * PCIE_RX_MAX)),
    }


def _since_boot(t: float) -> float:
    return max(0.0, t - BOOT_TIME)


@dataclass(frozen=True, slots=True)
class _CiPlan:
    entity: Entity
    spec: ComputeInstanceSpec
    seed: str
    weight: float  # share of its GPU instance's compute slices


@dataclass(frozen=True, slots=True)
class _InstancePlan:
    entity: Entity
    spec: InstanceSpec
    memory_seed: str
    weight: float  # share of the GPU's 7 compute slices
    cis: tuple[_CiPlan, ...]


class Simulator:
    """The simulated node. `sample(gpu, t)` is a pure function of the scenario, the layout and t."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._gpus: list[GpuSpec] = list(scenario.gpus)
        self._topology = self._build_topology()
        self._plans = self._plan()
        # Counters grow at each GPU's mean modelled rate, fixed by the scenario (not by later re-partitions),
        # so they never go down.
        self._mean_level = [self._mean_activity(index) for index in range(len(self._gpus))]

    def _mean_activity(self, gpu: int) -> float:
        """The GPU's graphics-engine activity averaged over one simulated day (24 hourly points)."""
        points = [BOOT_TIME + hour * 3600.0 for hour in range(24)]
        return sum(self.gpu_activity(gpu, t)[Field.GR_ENGINE_ACTIVE] for t in points) / len(points)

    # -- topology ---------------------------------------------------------------------------

    def topology(self) -> Topology:
        """The current layout of every GPU."""
        return self._topology

    def gpu_uuid(self, index: int) -> str:
        return "GPU-" + _uuid(self.scenario.seed, "gpu", index)

    @staticmethod
    def pci_bus_id(index: int) -> str:
        """The PCI bus ID of GPU `index`, laid out as on a DGX H100 (two GPUs per PCIe switch pair)."""
        buses = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)
        bus = buses[index % len(buses)] + index // len(buses)
        return f"00000000:{bus:02X}:00.0"

    def mig_uuid(self, gpu: int, gi: int, ci: int) -> str:
        return "MIG-" + _uuid(self.scenario.seed, "mig", gpu, gi, ci)

    def repartition(self, gpu: int, instances: tuple[InstanceSpec, ...]) -> None:
        """Replace one GPU's MIG layout, as `nvidia-smi mig -dci -dgi -cgi` would."""
        spec = self._gpus[gpu]
        self._gpus[gpu] = replace(spec, mig=True, instances=instances)
        self._topology = self._build_topology()
        self._plans = self._plan()

    def _build_topology(self) -> Topology:
        gpus = []
        for index, spec in enumerate(self._gpus):
            instances = tuple(self._instance(index, inst) for inst in spec.instances) if spec.mig else ()
            gpus.append(
                Gpu(
                    index=index,
                    uuid=self.gpu_uuid(index),
                    model=spec.board.model_names[0],
                    board=spec.board.key,
                    driver_version=self.scenario.driver_version,
                    mig_enabled=spec.mig,
                    mig_pending=spec.mig,
                    memory_total_bytes=int(spec.board.memory_gib * GIB),
                    instances=instances,
                    pci_bus_id=self.pci_bus_id(index),
                )
            )
        return Topology(tuple(gpus))

    def _instance(self, gpu: int, spec: InstanceSpec) -> GpuInstance:
        cis = tuple(
            ComputeInstance(
                gi=spec.gi,
                ci=ci_id,
                profile=c.profile,
                compute_slices=self._ci_slices(spec, c),
                mig_uuid=self.mig_uuid(gpu, spec.gi, ci_id),
            )
            for ci_id, c in enumerate(spec.compute_instances)
        )
        p = spec.profile
        return GpuInstance(
            gi=spec.gi,
            profile=p.name,
            profile_id=p.id,
            placement_start=spec.start,
            placement_size=p.memory_slices,
            compute_slices=p.compute_slices,
            memory_slices=p.memory_slices,
            memory_total_bytes=p.memory_bytes,
            compute_instances=cis,
        )

    @staticmethod
    def _ci_slices(gi: InstanceSpec, ci: ComputeInstanceSpec) -> int:
        if ci.profile == gi.profile.name:
            return gi.profile.compute_slices
        return int(ci.profile.split("c.", 1)[0])

    # -- truth ------------------------------------------------------------------------------

    def _seed(self, *parts: object) -> str:
        return ":".join(map(str, (self.scenario.seed, *parts)))

    def _plan(self) -> dict[tuple[int, int], _InstancePlan]:
        """Per GPU instance what sampling needs, worked out once per layout: entities, seeds, weights."""
        plans = {}
        for index, spec in enumerate(self._gpus):
            if not spec.mig:
                continue
            for inst in spec.instances:
                cis = tuple(
                    _CiPlan(
                        Entity(index, inst.gi, ci_id),
                        c,
                        self._seed(index, inst.gi, ci_id),
                        self._ci_slices(inst, c) / inst.profile.compute_slices,
                    )
                    for ci_id, c in enumerate(inst.compute_instances)
                )
                plans[(index, inst.gi)] = _InstancePlan(
                    Entity(index, inst.gi),
                    inst,
                    self._seed(index, inst.gi, "mem"),
                    inst.profile.compute_slices / COMPUTE_SLICES,
                    cis,
                )
        return plans

    def _instance_plan(self, gpu: int, gi: int) -> _InstancePlan:
        plan = self._plans.get((gpu, gi))
        if plan is None:
            raise KeyError(f"GPU {gpu} has no GPU instance {gi}")
        return plan

    @staticmethod
    def _ci_values(ci: _CiPlan, t: float) -> dict[Field, float]:
        return _activity_fields(evaluate(ci.spec.activity, t, ci.seed), ci.spec.ratios)

    @staticmethod
    def _gi_memory(inst: _InstancePlan, t: float) -> int:
        return round(evaluate(inst.spec.memory, t, inst.memory_seed) * inst.spec.profile.memory_bytes)

    def ci_activity(self, gpu: int, gi: int, ci: int, t: float) -> dict[Field, float]:
        """Activity ratios of one compute instance at time t."""
        return self._ci_values(self._instance_plan(gpu, gi).cis[ci], t)

    def gi_activity(self, gpu: int, gi: int, t: float) -> dict[Field, float]:
        """Activity ratios of one GPU instance: the compute-slice-weighted mean over its slices."""
        plan = self._instance_plan(gpu, gi)
        return _weighted((ci.weight, self._ci_values(ci, t)) for ci in plan.cis)

    def gi_memory_used(self, gpu: int, gi: int, t: float) -> float:
        """Bytes used in one GPU instance at time t."""
        return self._gi_memory(self._instance_plan(gpu, gi), t)

    def _whole_gpu_activity(self, gpu: int, t: float) -> dict[Field, float]:
        spec = self._gpus[gpu]
        return _activity_fields(evaluate(spec.activity, t, self._seed(gpu)), spec.ratios)

    def gpu_activity(self, gpu: int, t: float) -> dict[Field, float]:
        """Whole-GPU activity ratios: the GPU's own workload, or the slice-weighted sum of its instances."""
        spec = self._gpus[gpu]
        if not spec.mig:
            return self._whole_gpu_activity(gpu, t)
        return _weighted(
            (self._plans[(gpu, inst.gi)].weight, self.gi_activity(gpu, inst.gi, t)) for inst in spec.instances
        )

    def gpu_memory_used(self, gpu: int, t: float) -> float:
        spec = self._gpus[gpu]
        if not spec.mig:
            return round(evaluate(spec.memory, t, self._seed(gpu, "mem")) * spec.board.memory_gib * GIB)
        return sum(self.gi_memory_used(gpu, inst.gi, t) for inst in spec.instances)

    def sample(self, gpu: int, t: float) -> GpuSample:
        """Every field of one GPU and its instances at time t; each compute instance is evaluated once."""
        g = self._topology.gpus[gpu]
        values: dict[Entity, Mapping[Field, float]] = {}
        if g.mig_enabled:
            memory_used: float = 0
            instances: list[tuple[float, dict[Field, float]]] = []
            for inst in g.instances:
                plan = self._plans[(gpu, inst.gi)]
                cis = [self._ci_values(ci, t) for ci in plan.cis]
                activity = _weighted((ci.weight, v) for ci, v in zip(plan.cis, cis, strict=True))
                memory = self._gi_memory(plan, t)
                memory_used += memory
                inst_values: dict[Field, float] = dict(activity)
                inst_values[Field.MEMORY_USED] = float(memory)
                inst_values[Field.MEMORY_TOTAL] = float(inst.memory_total_bytes)
                inst_values.update(pcie_rates(activity[Field.GR_ENGINE_ACTIVE], plan.weight))
                values[plan.entity] = inst_values
                for ci, ci_values in zip(plan.cis, cis, strict=True):
                    values[ci.entity] = ci_values
                instances.append((plan.weight, activity))
            gpu_activity = _weighted(instances)
        else:
            memory_used = self.gpu_memory_used(gpu, t)
            gpu_activity = self._whole_gpu_activity(gpu, t)
        level = gpu_activity[Field.GR_ENGINE_ACTIVE]
        gpu_values: dict[Field, float] = {
            Field.MEMORY_TOTAL: float(g.memory_total_bytes),
            Field.MEMORY_USED: float(memory_used),
            Field.POWER: round(IDLE_POWER_WATTS + (MAX_POWER_WATTS - IDLE_POWER_WATTS) * level, 1),
            Field.TEMPERATURE: round(IDLE_TEMPERATURE_C + (MAX_TEMPERATURE_C - IDLE_TEMPERATURE_C) * level),
        }
        gpu_values.update(self._health(gpu, t, level))
        if not g.mig_enabled:
            gpu_values.update(gpu_activity)
            gpu_values[Field.GPU_UTIL] = round(min(1.0, level * 1.1), 2)  # NVML reads whole percents
            gpu_values[Field.MEMORY_COPY_UTIL] = round(gpu_activity[Field.DRAM_ACTIVE], 2)
            gpu_values.update(pcie_rates(level, 1.0))
        values[Entity(gpu)] = gpu_values
        return GpuSample(gpu=gpu, values=values)

    def nvlink_rate(self, gpu: int) -> float:
        """NVLink bytes per second: a whole-GPU job's steady traffic (MIG instances have no NVLink peer traffic).

        A whole number of DCGM's units (1,024,000 bytes/s), so every source reads it exactly.
        """
        if gpu >= len(self._mean_level) or self._gpus[gpu].mig:
            return 0.0
        return float(round(NVLINK_MAX * self._mean_level[gpu] / NVLINK_UNIT) * NVLINK_UNIT)

    def nvlink_kib(self, gpu: int, t: float) -> int:
        """NVML's NVLink data counter (received and transmitted, all links) at time t: KiB since the driver loaded."""
        return int(self.nvlink_rate(gpu) * _since_boot(t)) // KIB

    def _health(self, gpu: int, t: float, level: float) -> dict[Field, float]:
        """GPU-wide clocks, memory temperature, energy, PCIe replays, reserved memory, remapped rows, NVLink."""
        mean = self._mean_level[gpu] if gpu < len(self._mean_level) else level
        since = _since_boot(t)
        mean_power = IDLE_POWER_WATTS + (MAX_POWER_WATTS - IDLE_POWER_WATTS) * mean
        busy = level >= 0.01
        sm_clock = MAX_SM_CLOCK_MHZ - round(200 * level) if busy else IDLE_SM_CLOCK_MHZ
        return {
            Field.SM_CLOCK: sm_clock * 1e6,
            Field.MEMORY_CLOCK: MEMORY_CLOCK_MHZ * 1e6,
            Field.MEMORY_TEMPERATURE: float(
                round(IDLE_MEMORY_TEMPERATURE_C + (MAX_MEMORY_TEMPERATURE_C - IDLE_MEMORY_TEMPERATURE_C) * level)
            ),
            Field.ENERGY: round(mean_power * since, 3),  # NVML counts millijoules
            Field.PCIE_REPLAYS: float(int(since // (3600.0 * (48 + 24 * gpu)))),
            Field.MEMORY_RESERVED: float(RESERVED_BYTES),
            Field.REMAPPED_ROWS_CORRECTABLE: float((gpu * 5 + 3) % 7 == 0),
            Field.REMAPPED_ROWS_UNCORRECTABLE: 0.0,
            Field.ROW_REMAP_FAILURE: 0.0,
            Field.NVLINK_RATE: self.nvlink_rate(gpu),
            Field.ENCODER_UTIL: 0.0,
            Field.DECODER_UTIL: round(0.1 * level, 2),
        }


def _weighted(parts: Iterable[tuple[float, Mapping[Field, float]]]) -> dict[Field, float]:
    """The weighted sum of activity ratios, field by field."""
    total = {f: 0.0 for f in ACTIVITY_FIELDS}
    for weight, values in parts:
        for f, v in values.items():
            total[f] += weight * v
    return total
