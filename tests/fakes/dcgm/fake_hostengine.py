"""An in-process stand-in for nv-hostengine, backed by the synthetic simulator.

The fake `dcgm_agent` calls into the engine installed here. It keeps DCGM's behaviour that
the source depends on: its own GPU IDs (not necessarily NVML's indexes: `gpu_ids`) and GPU-instance
and compute-instance entity IDs (numbered per GPU as the cache manager does, `gpuId * 7 + n`, and
renumbered on a re-partition), groups and field groups that die with the connection, values only
for watched fields after an update, a blank first profiling value after a watch, per-value
statuses, and an engine that can be stopped and started (all handles invalid afterwards).

XIDs (`raise_xid`, and the scenario's `xids:` when their time comes) are recorded as DCGM's cache
manager records them: field 230 on the GPU entity when GPU-wide, on the GPU_I entity when a GPU
instance raised it, on the GPU_CI entity when a compute instance did, each value stamped with the
wall-clock time it arrived (DCGM keeps the latest per entity; the agent returns it with its `ts`).

A GPU can be lost (`lose`): adding its entities to a group or watching them fails with
GPU_IS_LOST, its values read as blanks with status OK (as the cache manager writes them for a
lost GPU), and either it stays in `dcgmGetAllSupportedDevices` (listed and failing) or it drops
out of it (DCGM's usual way, since that list holds only GPUs whose status is OK).

Tests install an engine with `install(FakeHostEngine(...))`. A child process (the CLI under
test) gets one built from FAKE_DCGM_SCENARIO (default `demo`); FAKE_DCGM_ADDRESS sets the
address it listens on (default localhost:5555) and FAKE_DCGM_PROFILING=0 turns profiling off.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dcgm_fields
import dcgm_structs
import dcgmvalue

from exporter.model import Entity, Field
from exporter.sources.synthetic.scenario import InstanceSpec, load
from exporter.sources.synthetic.simulator import Simulator

MIB = 1024**2
PROFILING = {
    1001: Field.GR_ENGINE_ACTIVE,
    1002: Field.SM_ACTIVE,
    1003: Field.SM_OCCUPANCY,
    1004: Field.TENSOR_ACTIVE,
    1005: Field.DRAM_ACTIVE,
}
# Profiling I/O rates, bytes per second (int64), on GPU-instance entities and MIG-disabled GPUs.
IO = {1009: Field.PCIE_TX_RATE, 1010: Field.PCIE_RX_RATE}
PROFILED = {*PROFILING, *IO}  # fields the profiling module serves: a blank first value after a watch
# GPU-wide fields (int64) in DCGM's units: field number -> (simulator field, factor from base units).
HEALTH = {
    100: (Field.SM_CLOCK, 1e-6),
    101: (Field.MEMORY_CLOCK, 1e-6),
    140: (Field.MEMORY_TEMPERATURE, 1.0),
    156: (Field.ENERGY, 1e3),
    202: (Field.PCIE_REPLAYS, 1.0),
    203: (Field.GPU_UTIL, 100.0),
    204: (Field.MEMORY_COPY_UTIL, 100.0),
    206: (Field.ENCODER_UTIL, 100.0),
    207: (Field.DECODER_UTIL, 100.0),
    253: (Field.MEMORY_RESERVED, 1 / MIB),
    393: (Field.REMAPPED_ROWS_UNCORRECTABLE, 1.0),
    394: (Field.REMAPPED_ROWS_CORRECTABLE, 1.0),
    395: (Field.ROW_REMAP_FAILURE, 1.0),
    449: (Field.NVLINK_RATE, 1 / (1024 * 1000)),  # a rate: KiB/s / 1000, as DCGM's cache manager computes it
}
DOUBLE_FIELDS = {*PROFILING, 155}
FI_XID = 230
STRING_FIELDS = {50, 54}
CI_PROFILE_IDS = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4}
NO_ID = 0xFFFFFFFF
MAX_GPCS = 7  # nvmlDeviceGetMaxMigDeviceCount on A100/H100: DCGM numbers each GPU's instances from gpuId * 7


class EngineError(Exception):
    """A DCGM status the fake agent turns into the real DCGMError."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class _Watch:
    entities: frozenset[tuple[int, int]]
    fields: frozenset[int]
    freq_s: float
    created: float
    forced: list[float] = field(default_factory=list)

    def updates(self, now: float) -> tuple[int, float | None]:
        """How many updates happened since the watch began, and the time of the latest."""
        ticks = math.floor((now - self.created) / self.freq_s)
        latest = self.created + ticks * self.freq_s if ticks >= 1 else None
        if self.forced and (latest is None or self.forced[-1] > latest):
            latest = self.forced[-1]
        return ticks + len(self.forced), latest


@dataclass(frozen=True)
class _Entities:
    """The engine's numbering of the current layout."""

    gis: dict[int, tuple[int, int]]  # GPU_I entity ID -> (gpu, gi)
    cis: dict[int, tuple[int, int, int]]  # GPU_CI entity ID -> (gpu, gi, ci)


class FakeHostEngine:
    """The host engine: the simulator's node behind DCGM's API semantics."""

    def __init__(
        self,
        simulator: Simulator,
        address: str = "localhost:5555",
        clock: Callable[[], float] = time.time,
        profiling: bool = True,
        gpu_ids: Mapping[int, int] | None = None,
        version: str = "4.6.0",
    ) -> None:
        self.simulator = simulator
        self.address = address
        self.clock = clock
        self.profiling = profiling
        # What a profiling watch fails with when profiling is off: PROFILING_NOT_SUPPORTED (the GPU or engine
        # cannot), MODULE_NOT_LOADED (the profiling module failed to load), REQUIRES_ROOT (non-root host engine).
        self.profiling_error = dcgm_structs.DCGM_ST_PROFILING_NOT_SUPPORTED
        # Field number -> the status a watch of a field group holding it fails with (an older DCGM that lacks the
        # field, or a profiling module that cannot add it to its passes).
        self.unwatchable: dict[int, int] = {}
        self.build_info = f"version:{version};arch:x86_64;buildtype:Release;commit:fake;branch:fake;"
        self.running = True
        # NVML index -> DCGM GPU ID; DCGM's IDs follow its own enumeration, not NVML's order.
        count = len(simulator.topology().gpus)
        self.gpu_ids: dict[int, int] = dict(gpu_ids) if gpu_ids is not None else {i: i for i in range(count)}
        self.lost: dict[int, bool] = {}  # NVML index -> whether the lost GPU is still listed as supported
        self._profiling_loaded = False
        self.blank: dict[int, str] = {}  # field ID -> "blank" | "not_found" | "not_supported" | "no_permission"
        self.statuses: dict[int, int] = {}  # field ID -> per-value DCGM_ST_* status
        self.calls: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._next_id = 1
        self._handles: set[int] = set()
        self._groups: dict[int, tuple[str, list[tuple[int, int]]]] = {}
        self._field_groups: dict[int, tuple[str, tuple[int, ...]]] = {}
        self._watches: dict[tuple[int, int], _Watch] = {}
        self._entities = self._enumerate()
        self._xids: dict[tuple[int, int], list[tuple[int, int]]] = {}  # entity -> field 230's (ts in us, XID)s
        self._xid_plan = sorted(simulator.scenario.xids, key=lambda x: x.after)
        self._xids_raised = 0
        self._started = time.monotonic()

    # -- engine life ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the engine: every handle, group, field group and watch is gone."""
        with self._lock:
            self.running = False
            self._handles.clear()
            self._groups.clear()
            self._field_groups.clear()
            self._watches.clear()

    def start(self) -> None:
        with self._lock:
            self.running = True
            self._entities = self._enumerate()

    def repartition(self, gpu: int, instances: tuple[InstanceSpec, ...]) -> None:
        """Change one GPU's layout; DCGM renumbers its instance entities."""
        with self._lock:
            self.simulator.repartition(gpu, instances)
            self._entities = self._enumerate()

    def lose(self, gpu: int, listed: bool = False) -> None:
        """GPU `gpu` (NVML index) falls off the bus; `listed` keeps it in the supported-devices list."""
        with self._lock:
            self.lost[gpu] = listed

    def restore(self, gpu: int) -> None:
        with self._lock:
            self.lost.pop(gpu, None)

    def raise_xid(self, gpu: int, xid: int, gi: int | None = None, ci: int | None = None) -> None:
        """The driver reports XID `xid` on NVML GPU `gpu`, raised by GI `gi` / CI `ci` (None: GPU-wide)."""
        with self._lock:
            if gi is None:
                entity = (dcgm_fields.DCGM_FE_GPU, self.gpu_ids[gpu])
            elif ci is None:
                found = [e for e, v in self._entities.gis.items() if v == (gpu, gi)]
                entity = (dcgm_fields.DCGM_FE_GPU_I, found[0])
            else:
                found = [e for e, v in self._entities.cis.items() if v == (gpu, gi, ci)]
                entity = (dcgm_fields.DCGM_FE_GPU_CI, found[0])
            history = self._xids.setdefault(entity, [])
            history.append((max(int(time.time() * 1e6), history[-1][0] + 1 if history else 0), xid))

    def _raise_scenario_xids(self) -> None:
        elapsed = time.monotonic() - self._started
        while self._xids_raised < len(self._xid_plan) and self._xid_plan[self._xids_raised].after <= elapsed:
            spec = self._xid_plan[self._xids_raised]
            self._xids_raised += 1
            self.raise_xid(spec.gpu, spec.xid, spec.gi, spec.ci)

    def _enumerate(self) -> _Entities:
        gis: dict[int, tuple[int, int]] = {}
        cis: dict[int, tuple[int, int, int]] = {}
        for g in self.simulator.topology().gpus:
            base = self.gpu_ids[g.index] * MAX_GPCS
            ci_count = 0
            for n, inst in enumerate(g.instances):
                gis[base + n] = (g.index, inst.gi)
                for ci in inst.compute_instances:
                    cis[base + ci_count] = (g.index, inst.gi, ci.ci)
                    ci_count += 1
        return _Entities(gis, cis)

    def _index(self, gpu_id: int) -> int | None:
        """The NVML index of DCGM GPU ID `gpu_id`."""
        return next((index for index, dcgm_id in self.gpu_ids.items() if dcgm_id == gpu_id), None)

    def _gpu_of(self, group: int, entity_id: int) -> int | None:
        """The NVML index of the GPU an entity belongs to."""
        if group == dcgm_fields.DCGM_FE_GPU:
            return self._index(entity_id)
        if group == dcgm_fields.DCGM_FE_GPU_I and entity_id in self._entities.gis:
            return self._entities.gis[entity_id][0]
        if group == dcgm_fields.DCGM_FE_GPU_CI and entity_id in self._entities.cis:
            return self._entities.cis[entity_id][0]
        return None

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- connections ------------------------------------------------------------------------

    def connect(self, address: str) -> int:
        self.calls["connect"] += 1
        host, _, port = address.rpartition(":")
        mine_host, _, mine_port = self.address.rpartition(":")
        local = {"localhost", "127.0.0.1"}
        same = port == mine_port and (host == mine_host or {host, mine_host} <= local)
        if not self.running or not same:
            raise EngineError(dcgm_structs.DCGM_ST_CONNECTION_NOT_VALID)
        with self._lock:
            handle = self._new_id()
            self._handles.add(handle)
            return handle

    def start_embedded(self) -> int:
        self.calls["start_embedded"] += 1
        with self._lock:
            self.running = True
            handle = self._new_id()
            self._handles.add(handle)
            return handle

    def disconnect(self, handle: int) -> None:
        self.check(handle)
        with self._lock:
            self._handles.discard(handle)
            # persistAfterDisconnect=0: the engine cleans up after the client. All groups here belong to it.
            self._groups.clear()
            self._field_groups.clear()
            self._watches.clear()

    def check(self, handle: int) -> None:
        if not self.running or handle not in self._handles:
            raise EngineError(dcgm_structs.DCGM_ST_CONNECTION_NOT_VALID)

    # -- discovery --------------------------------------------------------------------------

    def supported_gpus(self, handle: int) -> list[int]:
        """DCGM's active GPUs: a lost GPU is left out unless it is modelled as still listed."""
        self.check(handle)
        return sorted(self.gpu_ids[i] for i in self.gpu_ids if self.lost.get(i, True))

    def all_gpus(self, handle: int) -> list[int]:
        self.check(handle)
        return sorted(self.gpu_ids.values())

    def module_statuses(self, handle: int) -> list[tuple[int, int]]:
        """Each module's load status; the profiling module loads on the first profiling watch."""
        self.check(handle)
        profiling = dcgm_structs.DcgmModuleStatusNotLoaded
        if self._profiling_loaded:
            profiling = dcgm_structs.DcgmModuleStatusLoaded
        elif not self.profiling and self.profiling_error == dcgm_structs.DCGM_ST_MODULE_NOT_LOADED:
            profiling = dcgm_structs.DcgmModuleStatusFailed
        statuses = dict.fromkeys(range(dcgm_structs.DcgmModuleIdCount), dcgm_structs.DcgmModuleStatusNotLoaded)
        statuses[dcgm_structs.DcgmModuleIdCore] = dcgm_structs.DcgmModuleStatusLoaded
        statuses[dcgm_structs.DcgmModuleIdProfiling] = profiling
        return sorted(statuses.items())

    def fill_attributes(self, handle: int, gpu_id: int, attrs: Any) -> None:
        self.check(handle)
        index = self._index(gpu_id)
        gpu = None if index is None else self.simulator.topology().gpu(index)
        if gpu is None:
            raise EngineError(dcgm_structs.DCGM_ST_BADPARAM)
        attrs.identifiers.deviceName = gpu.model
        attrs.identifiers.brandName = "NVIDIA"
        attrs.identifiers.uuid = gpu.uuid
        attrs.identifiers.driverVersion = gpu.driver_version
        attrs.identifiers.pciBusId = gpu.pci_bus_id
        attrs.memoryUsage.fbTotal = gpu.memory_total_bytes // MIB
        attrs.settings.migModeEnabled = 1 if gpu.mig_enabled else 0

    def fill_hierarchy(self, handle: int, hierarchy: Any) -> None:
        self.check(handle)
        topology = self.simulator.topology()
        count = 0
        gi_entity = {v: k for k, v in self._entities.gis.items()}
        for entity_id, (g, gi) in self._entities.gis.items():
            gpu = topology.gpus[g]
            inst = gpu.instance(gi)
            assert inst is not None
            e = hierarchy.entityList[count]
            e.entity.entityGroupId, e.entity.entityId = dcgm_fields.DCGM_FE_GPU_I, entity_id
            e.parent.entityGroupId, e.parent.entityId = dcgm_fields.DCGM_FE_GPU, self.gpu_ids[g]
            self._info(e.info, gpu.uuid, g, gi, NO_ID, inst.profile_id, inst.compute_slices)
            count += 1
            for ci_entity, (cg, cgi, ci) in self._entities.cis.items():
                if (cg, cgi) != (g, gi):
                    continue
                cinst = next(c for c in inst.compute_instances if c.ci == ci)
                e = hierarchy.entityList[count]
                e.entity.entityGroupId, e.entity.entityId = dcgm_fields.DCGM_FE_GPU_CI, ci_entity
                e.parent.entityGroupId, e.parent.entityId = dcgm_fields.DCGM_FE_GPU_I, gi_entity[(g, gi)]
                slices = cinst.compute_slices
                self._info(e.info, gpu.uuid, g, gi, ci, CI_PROFILE_IDS[slices], slices)
                count += 1
        hierarchy.count = count

    @staticmethod
    def _info(info: Any, uuid: str, gpu: int, gi: int, ci: int, profile: int, slices: int) -> None:
        info.gpuUuid = uuid
        info.nvmlGpuIndex = gpu
        info.nvmlInstanceId = gi
        info.nvmlComputeInstanceId = ci
        info.nvmlMigProfileId = profile
        info.nvmlProfileSlices = slices

    # -- groups and watches -----------------------------------------------------------------

    def group_create(self, handle: int, group_type: int, name: str) -> int:
        self.check(handle)
        self.calls["group_create"] += 1
        if group_type != dcgm_structs.DCGM_GROUP_EMPTY:
            raise EngineError(dcgm_structs.DCGM_ST_NOT_SUPPORTED)  # the fake only builds groups entity by entity
        with self._lock:
            if len(self._groups) >= dcgm_structs.DCGM_MAX_NUM_GROUPS:
                raise EngineError(dcgm_structs.DCGM_ST_MAX_LIMIT)
            group = self._new_id()
            self._groups[group] = (name, [])
            return group

    def group_add_entity(self, handle: int, group: int, entity_group: int, entity_id: int) -> None:
        self.check(handle)
        if group not in self._groups:
            raise EngineError(dcgm_structs.DCGM_ST_NOT_CONFIGURED)
        if not self._exists(entity_group, entity_id):
            raise EngineError(dcgm_structs.DCGM_ST_BADPARAM)
        if self._gpu_of(entity_group, entity_id) in self.lost:
            raise EngineError(dcgm_structs.DCGM_ST_GPU_IS_LOST)  # the group manager refuses a lost GPU's entities
        members = self._groups[group][1]
        if (entity_group, entity_id) in members:
            raise EngineError(dcgm_structs.DCGM_ST_DUPLICATE_KEY)
        members.append((entity_group, entity_id))

    def group_destroy(self, handle: int, group: int) -> None:
        self.check(handle)
        if self._groups.pop(group, None) is None:
            raise EngineError(dcgm_structs.DCGM_ST_NOT_CONFIGURED)

    def field_group_create(self, handle: int, field_ids: tuple[int, ...], name: str) -> int:
        self.check(handle)
        self.calls["field_group_create"] += 1
        with self._lock:
            if any(n == name for n, _ in self._field_groups.values()):
                raise EngineError(dcgm_structs.DCGM_ST_DUPLICATE_KEY)
            if not field_ids or len(field_ids) > dcgm_structs.DCGM_MAX_FIELD_IDS_PER_FIELD_GROUP:
                raise EngineError(dcgm_structs.DCGM_ST_BADPARAM)
            fg = self._new_id()
            self._field_groups[fg] = (name, field_ids)
            return fg

    def field_group_destroy(self, handle: int, fg: int) -> None:
        self.check(handle)
        if self._field_groups.pop(fg, None) is None:
            raise EngineError(dcgm_structs.DCGM_ST_NO_DATA)

    def watch(self, handle: int, group: int, fg: int, freq_us: int, keep_age: float, keep_samples: int) -> None:
        self.check(handle)
        self.calls["watch"] += 1
        if group not in self._groups or fg not in self._field_groups:
            raise EngineError(dcgm_structs.DCGM_ST_BADPARAM)
        fields = self._field_groups[fg][1]
        if any(self._gpu_of(*entity) in self.lost for entity in self._groups[group][1]):
            raise EngineError(dcgm_structs.DCGM_ST_GPU_IS_LOST)  # no watches on a lost GPU's entities
        for f in fields:
            if f in self.unwatchable:
                raise EngineError(self.unwatchable[f])
        if any(f in PROFILED for f in fields):
            if not self.profiling:
                raise EngineError(self.profiling_error)
            self._profiling_loaded = True
        if freq_us <= 0:
            raise EngineError(dcgm_structs.DCGM_ST_BADPARAM)
        self._watches[(group, fg)] = _Watch(
            frozenset(self._groups[group][1]), frozenset(fields), freq_us / 1e6, self.clock()
        )

    def unwatch(self, handle: int, group: int, fg: int) -> None:
        self.check(handle)
        self._watches.pop((group, fg), None)

    def update_all(self, handle: int, wait: int) -> None:
        self.check(handle)
        now = self.clock()
        for w in self._watches.values():
            w.forced.append(now)

    # -- values -----------------------------------------------------------------------------

    def _exists(self, group: int, entity_id: int) -> bool:
        if group == dcgm_fields.DCGM_FE_GPU:
            return self._index(entity_id) is not None
        if group == dcgm_fields.DCGM_FE_GPU_I:
            return entity_id in self._entities.gis
        if group == dcgm_fields.DCGM_FE_GPU_CI:
            return entity_id in self._entities.cis
        return False

    def latest(self, handle: int, entities: Iterable[tuple[int, int]], field_ids: Iterable[int], flags: int) -> list:
        """(entity group, entity ID, field ID, field type, status, value, ts in us) for every entity x field."""
        self.check(handle)
        self._raise_scenario_xids()
        now = self.clock()
        fields = list(field_ids)
        out = []
        for group, entity_id in entities:
            for fid in fields:
                kind, status, value = self._value(group, entity_id, fid, flags, now)
                recorded = self._xids.get((group, entity_id)) if fid == FI_XID else None
                ok = bool(recorded) and status == dcgm_structs.DCGM_ST_OK
                ts_us = recorded[-1][0] if recorded and ok else int(now * 1e6)  # an XID's: when it arrived
                out.append((group, entity_id, fid, kind, status, value, ts_us))
        return out

    def values_since(self, handle: int, group: int, fg: int, since_us: int) -> list[tuple[int, int, list[Any]]]:
        """(entity group, entity ID, [(ts in us, XID)]) of field 230 at or after `since_us`, per entity of a watched
        group (the only field with a history here: the others are computed at any instant)."""
        self.check(handle)
        self._raise_scenario_xids()
        if (group, fg) not in self._watches:
            raise EngineError(dcgm_structs.DCGM_ST_NOT_WATCHED)
        if FI_XID not in self._field_groups[fg][1]:
            raise EngineError(dcgm_structs.DCGM_ST_NOT_SUPPORTED)  # the fake keeps no other field's history
        out = []
        for entity in self._groups[group][1]:
            if self._gpu_of(*entity) in self.lost:
                continue
            values = [v for v in self._xids.get(entity, []) if v[0] >= since_us]
            if values:
                out.append((*entity, values))
        return out

    def _value(self, group: int, entity_id: int, fid: int, flags: int, now: float) -> tuple[str, int, object]:
        kind = "s" if fid in STRING_FIELDS else "d" if fid in DOUBLE_FIELDS else "i"
        if not self._exists(group, entity_id):
            missing = (
                dcgm_structs.DCGM_ST_INSTANCE_NOT_FOUND
                if group == dcgm_fields.DCGM_FE_GPU_I
                else dcgm_structs.DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND
            )
            return kind, missing, _blank(kind, "blank")
        if self._gpu_of(group, entity_id) in self.lost:
            return kind, dcgm_structs.DCGM_ST_OK, _blank(kind, "blank")  # what the cache manager writes for it
        t = now
        if not flags & dcgm_structs.DCGM_FV_FLAG_LIVE_DATA:
            watch = next(
                (w for w in self._watches.values() if (group, entity_id) in w.entities and fid in w.fields), None
            )
            if watch is None:
                return kind, dcgm_structs.DCGM_ST_NOT_WATCHED, _blank(kind, "blank")
            if fid == FI_XID:  # event-driven: the latest XID recorded on the entity, whatever the watch's ticks
                recorded = self._xids.get((group, entity_id))
                if not recorded:
                    return kind, dcgm_structs.DCGM_ST_NO_DATA, _blank(kind, "blank")
                return kind, dcgm_structs.DCGM_ST_OK, recorded[-1][1]
            updates, latest = watch.updates(now)
            if latest is None:
                return kind, dcgm_structs.DCGM_ST_NO_DATA, _blank(kind, "blank")
            if fid in PROFILED and updates < 2:
                return kind, dcgm_structs.DCGM_ST_OK, _blank(kind, "blank")  # profiling needs two updates
            t = latest
        if fid in self.statuses:
            return kind, self.statuses[fid], _blank(kind, "blank")
        if fid in self.blank:
            return kind, dcgm_structs.DCGM_ST_OK, _blank(kind, self.blank[fid])
        value = self._truth(group, entity_id, fid, t)
        if value is None:
            return kind, dcgm_structs.DCGM_ST_NOT_SUPPORTED, _blank(kind, "not_supported")
        return kind, dcgm_structs.DCGM_ST_OK, value

    def _truth(self, group: int, entity_id: int, fid: int, t: float) -> object:
        sim = self.simulator
        if group == dcgm_fields.DCGM_FE_GPU:
            gpu, gi, ci = self._gpu_of(group, entity_id), None, None
            assert gpu is not None
        elif group == dcgm_fields.DCGM_FE_GPU_I:
            (gpu, gi), ci = self._entities.gis[entity_id], None
        else:
            gpu, gi, ci = self._entities.cis[entity_id]
        sample = sim.sample(gpu, t)
        whole = sample.values[Entity(gpu)]
        if fid in (150, 155):  # GPU-wide: an instance entity reads its parent's value
            return int(whole[Field.TEMPERATURE]) if fid == 150 else whole[Field.POWER]
        if fid in HEALTH:  # GPU-wide too; utilization is not supported with MIG on (absent from the truth)
            fld, factor = HEALTH[fid]
            return round(whole[fld] * factor) if fld in whole else None
        if fid in IO:
            if ci is not None:
                return None  # the fake serves I/O rates per GPU instance and whole GPU only
            own = whole if gi is None else sample.values[Entity(gpu, gi)]
            return round(own[IO[fid]])
        if fid == 52:
            return gpu
        if fid == 54:
            if ci is not None:
                return sim.mig_uuid(gpu, gi, ci)
            return sim.gpu_uuid(gpu) if gi is None else None
        if fid in PROFILING:
            if gi is None:
                return sim.gpu_activity(gpu, t)[PROFILING[fid]]
            own = sample.values[Entity(gpu, gi, ci)]
            return own[PROFILING[fid]]
        memory = sample.values[Entity(gpu, gi)]  # a compute instance shares its GI's memory
        total = round(memory[Field.MEMORY_TOTAL] / MIB)
        used = round(memory[Field.MEMORY_USED] / MIB)
        return {250: total, 252: used, 251: total - used}.get(fid)


def _blank(kind: str, why: str) -> object:
    offset = {"blank": 0, "not_found": 1, "not_supported": 2, "no_permission": 3}[why]
    if kind == "d":
        return dcgmvalue.DCGM_FP64_BLANK + offset
    if kind == "i":
        return dcgmvalue.DCGM_INT64_BLANK + offset
    return {
        0: dcgmvalue.DCGM_STR_BLANK,
        1: dcgmvalue.DCGM_STR_NOT_FOUND,
        2: dcgmvalue.DCGM_STR_NOT_SUPPORTED,
        3: dcgmvalue.DCGM_STR_NOT_PERMISSIONED,
    }[offset]


_engine: FakeHostEngine | None = None


def install(engine: FakeHostEngine | None) -> None:
    """Make `engine` the one the fake bindings talk to (None: build the default on next use)."""
    global _engine
    _engine = engine


def current() -> FakeHostEngine:
    global _engine
    if _engine is None:
        _engine = FakeHostEngine(
            Simulator(load(os.environ.get("FAKE_DCGM_SCENARIO", "demo"))),
            address=os.environ.get("FAKE_DCGM_ADDRESS", "localhost:5555"),
            profiling=os.environ.get("FAKE_DCGM_PROFILING", "1") != "0",
        )
    return _engine
