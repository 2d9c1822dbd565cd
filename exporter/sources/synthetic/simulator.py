"""A deterministic simulator of a MIG-partitioned GPU node: topology and truth at any instant.

It is the backing store of the synthetic source and of the fake NVML and DCGM libraries
used in tests. Activity is modelled per compute instance; a GPU instance reads the
compute-slice-weighted mean over its compute slices, as the hardware reports it (one busy
compute instance out of three equal ones reads 1/3 on the GPU instance).
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import replace

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


class Simulator:
    """The simulated node. `sample(gpu, t)` is a pure function of the scenario, the layout and t."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._gpus: list[GpuSpec] = list(scenario.gpus)
        self._topology = self._build_topology()

    # -- topology ---------------------------------------------------------------------------

    def topology(self) -> Topology:
        """The current layout of every GPU."""
        return self._topology

    def gpu_uuid(self, index: int) -> str:
        return "GPU-" + _uuid(self.scenario.seed, "gpu", index)

    def mig_uuid(self, gpu: int, gi: int, ci: int) -> str:
        return "MIG-" + _uuid(self.scenario.seed, "mig", gpu, gi, ci)

    def repartition(self, gpu: int, instances: tuple[InstanceSpec, ...]) -> None:
        """Replace one GPU's MIG layout, as `nvidia-smi mig -dci -dgi -cgi` would."""
        spec = self._gpus[gpu]
        self._gpus[gpu] = replace(spec, mig=True, instances=instances)
        self._topology = self._build_topology()

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

    def ci_activity(self, gpu: int, gi: int, ci: int, t: float) -> dict[Field, float]:
        """Activity ratios of one compute instance at time t."""
        spec = self._instance_spec(gpu, gi).compute_instances[ci]
        level = evaluate(spec.activity, t, self._seed(gpu, gi, ci))
        return _activity_fields(level, spec.ratios)

    def gi_activity(self, gpu: int, gi: int, t: float) -> dict[Field, float]:
        """Activity ratios of one GPU instance: the compute-slice-weighted mean over its slices."""
        inst = self._instance_spec(gpu, gi)
        total = {f: 0.0 for f in ACTIVITY_FIELDS}
        for ci_id, ci in enumerate(inst.compute_instances):
            weight = self._ci_slices(inst, ci) / inst.profile.compute_slices
            for f, v in self.ci_activity(gpu, gi, ci_id, t).items():
                total[f] += weight * v
        return total

    def gi_memory_used(self, gpu: int, gi: int, t: float) -> float:
        """Bytes used in one GPU instance at time t."""
        inst = self._instance_spec(gpu, gi)
        return round(evaluate(inst.memory, t, self._seed(gpu, gi, "mem")) * inst.profile.memory_bytes)

    def gpu_activity(self, gpu: int, t: float) -> dict[Field, float]:
        """Whole-GPU activity ratios: the GPU's own workload, or the slice-weighted sum of its instances."""
        spec = self._gpus[gpu]
        if not spec.mig:
            return _activity_fields(evaluate(spec.activity, t, self._seed(gpu)), spec.ratios)
        total = {f: 0.0 for f in ACTIVITY_FIELDS}
        for inst in spec.instances:
            weight = inst.profile.compute_slices / COMPUTE_SLICES
            for f, v in self.gi_activity(gpu, inst.gi, t).items():
                total[f] += weight * v
        return total

    def gpu_memory_used(self, gpu: int, t: float) -> float:
        spec = self._gpus[gpu]
        if not spec.mig:
            return round(evaluate(spec.memory, t, self._seed(gpu, "mem")) * spec.board.memory_gib * GIB)
        return sum(self.gi_memory_used(gpu, inst.gi, t) for inst in spec.instances)

    def _instance_spec(self, gpu: int, gi: int) -> InstanceSpec:
        for inst in self._gpus[gpu].instances:
            if inst.gi == gi:
                return inst
        raise KeyError(f"GPU {gpu} has no GPU instance {gi}")

    def sample(self, gpu: int, t: float) -> GpuSample:
        """Every field of one GPU and its instances at time t."""
        g = self._topology.gpus[gpu]
        activity = self.gpu_activity(gpu, t)[Field.GR_ENGINE_ACTIVE]
        gpu_values: dict[Field, float] = {
            Field.MEMORY_TOTAL: float(g.memory_total_bytes),
            Field.MEMORY_USED: float(self.gpu_memory_used(gpu, t)),
            Field.POWER: round(IDLE_POWER_WATTS + (MAX_POWER_WATTS - IDLE_POWER_WATTS) * activity, 1),
            Field.TEMPERATURE: round(IDLE_TEMPERATURE_C + (MAX_TEMPERATURE_C - IDLE_TEMPERATURE_C) * activity),
        }
        values: dict[Entity, Mapping[Field, float]] = {}
        if not g.mig_enabled:
            gpu_values.update(self.gpu_activity(gpu, t))
        for inst in g.instances:
            inst_values: dict[Field, float] = dict(self.gi_activity(gpu, inst.gi, t))
            inst_values[Field.MEMORY_USED] = float(self.gi_memory_used(gpu, inst.gi, t))
            inst_values[Field.MEMORY_TOTAL] = float(inst.memory_total_bytes)
            values[Entity(gpu, inst.gi)] = inst_values
            for ci in inst.compute_instances:
                values[Entity(gpu, inst.gi, ci.ci)] = self.ci_activity(gpu, inst.gi, ci.ci, t)
        values[Entity(gpu)] = gpu_values
        return GpuSample(gpu=gpu, values=values)
