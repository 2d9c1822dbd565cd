"""The DCGM source: NVIDIA's Data Center GPU Manager, through the Python bindings DCGM installs.

The bindings are not on PyPI; they ship with the DCGM package and load `libdcgm.so.4`. The
source connects to a host engine (`nv-hostengine`, default localhost:5555) or starts an
embedded one, and maps DCGM's own GPU-instance and compute-instance entity IDs to NVML's IDs
through the GPU-instance hierarchy. One field group (profiling ratios and framebuffer, by field
number) is watched on every GPU instance, compute instance and MIG-disabled GPU; power,
temperature and framebuffer are watched on GPU entities only, since on an instance the first
two repeat the parent's value (and a MIG-enabled GPU entity is never asked for profiling).

DCGM's entity IDs change on a re-partition and a host-engine restart loses every group and
watch, so both lead back to discovery, which re-maps the hierarchy and re-creates the
watches. Every blocking call runs in a thread.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from exporter.contract import defaults
from exporter.mig.catalog import board_for_model
from exporter.model import (
    Gpu,
    GpuInstance,
    GpuSample,
    Topology,
)
from exporter.sources.base import GpuError, SourceUnavailableError, TopologyChangedError
from exporter.sources.dcgm.mapping import (
    FE_GPU,
    FE_GPU_CI,
    FE_GPU_I,
    FI_NVML_INDEX,
    FI_UUID,
    GPU_FIELDS,
    INSTANCE_FIELDS,
    MEMORY_FIELDS,
    MIB,
    Assembler,
    GpuEntities,
    Reading,
    blank_reason,
    gpu_instance,
    hierarchy_signatures,
    profiled_entities,
)
from exporter.sources.driver_threads import in_driver_thread

log = logging.getLogger(__name__)

ENV_BINDINGS = "MIG_EXPORTER_DCGM_BINDINGS"
# Where DCGM 4 and DCGM 3 packages install the Python bindings.
DEFAULT_BINDING_DIRS: tuple[str, ...] = (
    "/usr/share/datacenter-gpu-manager-4/bindings/python3",
    "/usr/local/dcgm/bindings/python3",
)
EMBEDDED = "embedded"

RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
CONNECT_TIMEOUT_MS = 3000


@dataclass(frozen=True, slots=True)
class Bindings:
    """The binding modules the source calls; tests pass stand-ins."""

    agent: ModuleType  # dcgm_agent
    structs: ModuleType  # dcgm_structs
    fields: ModuleType  # dcgm_fields
    value: ModuleType  # dcgmvalue (blank sentinels)
    path: str


def locate_bindings(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The bindings directory: the one named by --dcgm-bindings or the environment, else an install path.

    Returns None when no install path holds them (they may still be importable from sys.path).
    Raises SourceUnavailableError when an explicitly named directory does not hold them.
    """
    named = explicit or environ.get(ENV_BINDINGS)
    if named:
        if not (Path(named) / "dcgm_agent.py").is_file():
            raise SourceUnavailableError(
                f"--dcgm-bindings / {ENV_BINDINGS} {named}: no DCGM Python bindings there (dcgm_agent.py "
                "missing); point it at DCGM's bindings/python3 directory"
            )
        return named
    for candidate in DEFAULT_BINDING_DIRS:
        if (Path(candidate) / "dcgm_agent.py").is_file():
            return candidate
    return None


def load_bindings(explicit: str | None = None, environ: Mapping[str, str] = os.environ) -> Bindings:
    """Import dcgm_structs, dcgm_fields, dcgm_agent and dcgmvalue from the located bindings directory."""
    path = locate_bindings(explicit, environ)
    if path is not None and path not in sys.path:
        sys.path.insert(0, path)
    try:
        modules = [importlib.import_module(name) for name in ("dcgm_structs", "dcgm_fields", "dcgm_agent", "dcgmvalue")]
    except ImportError as exc:
        looked = path or ", ".join(DEFAULT_BINDING_DIRS)
        raise SourceUnavailableError(
            f"DCGM Python bindings not found ({exc.name or exc} missing; looked in {looked}): install DCGM "
            f"(datacenter-gpu-manager-4) or point --dcgm-bindings / {ENV_BINDINGS} at its bindings/python3 directory"
        ) from None
    structs, fields, agent, value = modules
    return Bindings(agent=agent, structs=structs, fields=fields, value=value, path=path or "sys.path")


def open_dcgm(bindings_dir: str | None, host: str, interval: float) -> DcgmSource:
    """Load the bindings and connect; SourceUnavailableError says which of the two is missing."""
    bindings = load_bindings(bindings_dir)
    source = DcgmSource(bindings, host=host, interval=interval)
    source.start()
    return source


@dataclass(slots=True)
class _Watches:
    """Groups and field groups created on one connection."""

    handle: Any
    groups: list[Any] = field(default_factory=list)
    field_groups: list[Any] = field(default_factory=list)
    watched: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _State:
    """What sampling needs from the last discovery on the current connection."""

    handle: Any
    gpus: Mapping[int, GpuEntities]  # by NVML index
    profiling_reason: str  # non-empty when profiling fields could not be watched


class DcgmSource:
    """Reads GPUs, GPU instances and compute instances through a DCGM host engine."""

    name = "dcgm"

    def __init__(
        self,
        bindings: Bindings,
        host: str = defaults.DCGM_HOST,
        interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._b = bindings
        self._monotonic = monotonic
        self.host = host
        self.interval = interval
        self._lock = threading.RLock()
        self._handle: Any = None
        self._watches: _Watches | None = None
        self._state: _State | None = None
        self._retry_at = 0.0
        self._backoff = RECONNECT_MIN_S
        self._names = itertools.count(1)
        self._hierarchy_lock = threading.Lock()
        self._hierarchy_cache: tuple[float, Any, dict[int, tuple[tuple[int, ...], ...]]] | None = None
        self._status_names = {
            value: name.removeprefix("DCGM_ST_").lower()
            for name, value in vars(bindings.structs).items()
            if name.startswith("DCGM_ST_") and isinstance(value, int)
        }

    # -- connection -------------------------------------------------------------------------

    def start(self) -> None:
        """Load libdcgm and connect once; raise SourceUnavailableError naming what is missing."""
        structs = self._b.structs
        try:
            structs._dcgmInit()
            self._b.agent.dcgmInit()
        except structs.DCGMError as exc:
            raise SourceUnavailableError(
                f"DCGM library libdcgm.so.4 could not be loaded ({exc}; bindings at {self._b.path}): install "
                "datacenter-gpu-manager-4-core or add its directory to LD_LIBRARY_PATH"
            ) from None
        try:
            with self._lock:
                self._handle = self._connect()
        except structs.DCGMError as exc:
            self._shutdown_library()
            if self.host == EMBEDDED:
                raise SourceUnavailableError(f"cannot start an embedded DCGM host engine: {exc}") from None
            raise SourceUnavailableError(
                f"cannot connect to the DCGM host engine at {self.host} ({exc}): start nv-hostengine, "
                "point --dcgm-host at it, or use --dcgm-host embedded"
            ) from None

    def _connect(self) -> Any:
        agent, structs = self._b.agent, self._b.structs
        if self.host == EMBEDDED:
            return agent.dcgmStartEmbedded(structs.DCGM_OPERATION_MODE_AUTO)
        params = structs.c_dcgmConnectV2Params_v2()
        params.persistAfterDisconnect = 0  # the engine drops our groups and watches when we go
        params.timeoutMs = CONNECT_TIMEOUT_MS
        params.addressIsUnixSocket = 0
        return agent.dcgmConnect_v2(self.host, params)

    def _connected(self) -> Any:
        """The live handle, reconnecting (with backoff) when the connection was lost. Call under _lock."""
        if self._handle is not None:
            return self._handle
        now = self._monotonic()
        if now < self._retry_at:
            raise GpuError(
                f"DCGM host engine at {self.host} unreachable; reconnecting in {self._retry_at - now:.0f}s",
                reason="disconnected",
            )
        try:
            self._handle = self._connect()
        except self._b.structs.DCGMError as exc:
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, RECONNECT_MAX_S)
            raise GpuError(
                f"reconnecting to the DCGM host engine at {self.host} failed: {exc}", "disconnected"
            ) from None
        log.info("reconnected to the DCGM host engine at %s", self.host)
        self._backoff = RECONNECT_MIN_S
        return self._handle

    def _lost(self, handle: Any, exc: Exception) -> GpuError:
        """Forget a connection the engine no longer honours; its groups and watches died with it."""
        with self._lock:
            if self._handle is handle and handle is not None:
                log.warning("lost the DCGM host engine at %s: %s; reconnecting", self.host, exc)
                self._disconnect(handle)
                self._handle = None
                self._watches = None
                self._state = None
                self._retry_at = 0.0
        return GpuError(f"DCGM host engine connection lost: {exc}", reason="connection_lost")

    def _disconnect(self, handle: Any) -> None:
        agent = self._b.agent
        try:
            if self.host == EMBEDDED:
                agent.dcgmStopEmbedded(handle)
            else:
                agent.dcgmDisconnect(handle)
        except self._b.structs.DCGMError as exc:
            log.debug("disconnect: %s", exc)

    def _status(self, code: int) -> str:
        return self._status_names.get(code, f"status_{code}")

    def _error(self, handle: Any, exc: Any) -> GpuError:
        """The sampler-facing error for a DCGMError raised by a call on `handle`."""
        structs = self._b.structs
        if exc.value == structs.DCGM_ST_CONNECTION_NOT_VALID:
            return self._lost(handle, exc)
        if exc.value in (structs.DCGM_ST_INSTANCE_NOT_FOUND, structs.DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND):
            return TopologyChangedError(f"a MIG instance disappeared: {exc}")
        return GpuError(str(exc), reason=self._status(exc.value))

    # -- discovery --------------------------------------------------------------------------

    async def discover(self) -> Topology:
        return await in_driver_thread(self._discover)

    def _discover(self) -> Topology:
        with self._lock:
            handle = self._connected()
            try:
                topology, gpus = self._read_topology(handle)
                profiling_reason = self._watch(handle, gpus)
            except self._b.structs.DCGMError as exc:
                raise self._error(handle, exc) from None
            self._state = _State(handle=handle, gpus=gpus, profiling_reason=profiling_reason)
            with self._hierarchy_lock:
                self._hierarchy_cache = None
            return topology

    def _read_topology(self, handle: Any) -> tuple[Topology, dict[int, GpuEntities]]:
        agent = self._b.agent
        gpu_ids = [int(g) for g in agent.dcgmGetAllSupportedDevices(handle)]
        hierarchy = agent.dcgmGetGpuInstanceHierarchy(handle)
        entries = [hierarchy.entityList[i] for i in range(int(hierarchy.count))]
        gi_entries = [e for e in entries if int(e.entity.entityGroupId) == FE_GPU_I]
        ci_entries = [e for e in entries if int(e.entity.entityGroupId) == FE_GPU_CI]
        live = self._live_values(
            handle,
            [(FE_GPU, g) for g in gpu_ids] + [(FE_GPU_CI, int(e.entity.entityId)) for e in ci_entries],
            [FI_NVML_INDEX, FI_UUID],
        )
        gpus: list[Gpu] = []
        mapping: dict[int, GpuEntities] = {}
        signatures = hierarchy_signatures(entries)
        for gpu_id in gpu_ids:
            attrs = agent.dcgmGetDeviceAttributes(handle, gpu_id)
            nvml_index = live.get((FE_GPU, gpu_id, FI_NVML_INDEX))
            index = int(nvml_index) if isinstance(nvml_index, int) else gpu_id
            model = str(attrs.identifiers.deviceName)
            board = board_for_model(model)
            mine = [e for e in gi_entries if int(e.parent.entityId) == gpu_id]
            if mine:
                index = int(mine[0].info.nvmlGpuIndex)
            instances: list[GpuInstance] = []
            gis: dict[int, int] = {}
            cis: dict[tuple[int, int], int] = {}
            for gi_entry in mine:
                gi_entity = int(gi_entry.entity.entityId)
                children = [
                    e
                    for e in ci_entries
                    if int(e.parent.entityGroupId) == FE_GPU_I and int(e.parent.entityId) == gi_entity
                ]
                inst = gpu_instance(board, gi_entry, children, live)
                instances.append(inst)
                gis[inst.gi] = gi_entity
                for child in children:
                    cis[(inst.gi, int(child.info.nvmlComputeInstanceId))] = int(child.entity.entityId)
            mig_enabled = bool(int(attrs.settings.migModeEnabled)) or bool(mine)
            gpus.append(
                Gpu(
                    index=index,
                    uuid=str(attrs.identifiers.uuid),
                    model=model,
                    board=board.key if board else None,
                    driver_version=str(attrs.identifiers.driverVersion),
                    mig_enabled=mig_enabled,
                    memory_total_bytes=int(attrs.memoryUsage.fbTotal) * MIB,
                    instances=tuple(sorted(instances, key=lambda i: i.gi)),
                )
            )
            mapping[index] = GpuEntities(gpu_id, mig_enabled, gis, cis, signatures.get(gpu_id, ()))
        return Topology(tuple(sorted(gpus, key=lambda g: g.index))), mapping

    def _live_values(
        self, handle: Any, entities: Sequence[tuple[int, int]], field_ids: Sequence[int]
    ) -> dict[tuple[int, int, int], int | float | str]:
        """Identity fields read straight from the driver (no watch needed); blanks are left out."""
        if not entities:
            return {}
        structs = self._b.structs
        try:
            values = self._b.agent.dcgmEntitiesGetLatestValues(
                handle, self._pairs(entities), list(field_ids), structs.DCGM_FV_FLAG_LIVE_DATA
            )
        except structs.DCGMError as exc:
            if exc.value == structs.DCGM_ST_CONNECTION_NOT_VALID:
                raise
            # Identity extras only: fall back to DCGM GPU IDs as indexes and no MIG device UUIDs.
            log.warning("DCGM could not read NVML indexes and MIG device UUIDs: %s", exc)
            return {}
        out: dict[tuple[int, int, int], int | float | str] = {}
        for fv in values:
            key = (int(fv.entityGroupId), int(fv.entityId), int(fv.fieldId))
            if int(fv.status) != self._b.structs.DCGM_ST_OK:
                continue
            kind = chr(int(fv.fieldType))
            if kind == self._b.fields.DCGM_FT_STRING:
                text = str(fv.value.str)
                if not self._b.value.DCGM_STR_IS_BLANK(text):
                    out[key] = text
            elif kind == self._b.fields.DCGM_FT_INT64:
                number = int(fv.value.i64)
                if not self._b.value.DCGM_INT64_IS_BLANK(number):
                    out[key] = number
        return out

    def _pairs(self, entities: Iterable[tuple[int, int]]) -> list[Any]:
        pairs = []
        for group, entity_id in entities:
            pair = self._b.structs.c_dcgmGroupEntityPair_t()
            pair.entityGroupId = group
            pair.entityId = entity_id
            pairs.append(pair)
        return pairs

    # -- watches ----------------------------------------------------------------------------

    def _watch(self, handle: Any, gpus: Mapping[int, GpuEntities]) -> str:
        """(Re)create the groups and field groups and watch them; return why profiling is off, if it is."""
        agent, structs = self._b.agent, self._b.structs
        self._drop_watches()
        watches = self._watches = _Watches(handle)
        gpu_entities = [(FE_GPU, g.gpu_id) for g in gpus.values()]
        if not gpu_entities:
            return ""
        update_us = max(int(self.interval * 1_000_000), 1000)
        keep_age = max(10.0, 4 * self.interval)
        gpu_group = self._group(handle, "gpus", gpu_entities)
        gpu_fields = self._field_group(handle, "gpu-fields", GPU_FIELDS)
        agent.dcgmWatchFields(handle, gpu_group, gpu_fields, update_us, keep_age, 0)
        watches.watched.append((gpu_group, gpu_fields))
        profiled = [e for g in gpus.values() for e in profiled_entities(g)]
        if not profiled:
            return ""
        group = self._group(handle, "entities", profiled)
        instance_fields = self._field_group(handle, "instance-fields", INSTANCE_FIELDS)
        profiling_reason = ""
        try:
            agent.dcgmWatchFields(handle, group, instance_fields, update_us, keep_age, 0)
            watches.watched.append((group, instance_fields))
        except structs.DCGMError as exc:
            if exc.value not in (
                structs.DCGM_ST_PROFILING_NOT_SUPPORTED,
                structs.DCGM_ST_MODULE_NOT_LOADED,
                structs.DCGM_ST_NOT_SUPPORTED,
                structs.DCGM_ST_PROFILING_LIBRARY_ERROR,
                structs.DCGM_ST_PROFILING_MULTI_PASS,
                structs.DCGM_ST_REQUIRES_ROOT,
            ):
                raise
            profiling_reason = self._status(exc.value)
            log.warning("DCGM profiling fields cannot be watched (%s); reporting memory, power and temperature", exc)
            memory_fields = self._field_group(handle, "memory-fields", MEMORY_FIELDS)
            agent.dcgmWatchFields(handle, group, memory_fields, update_us, keep_age, 0)
            watches.watched.append((group, memory_fields))
        agent.dcgmUpdateAllFields(handle, 1)  # values exist only after a watch and an update
        return profiling_reason

    def _unique(self, what: str) -> str:
        # Field-group names must be unique on the engine, which other clients share.
        return f"mig-exporter-{os.getpid()}-{next(self._names)}-{what}"

    def _group(self, handle: Any, what: str, entities: Iterable[tuple[int, int]]) -> Any:
        assert self._watches is not None
        agent = self._b.agent
        group = agent.dcgmGroupCreate(handle, self._b.structs.DCGM_GROUP_EMPTY, self._unique(what))
        self._watches.groups.append(group)
        for entity_group, entity_id in entities:
            agent.dcgmGroupAddEntity(handle, group, entity_group, entity_id)
        return group

    def _field_group(self, handle: Any, what: str, field_ids: Sequence[int]) -> Any:
        assert self._watches is not None
        group = self._b.agent.dcgmFieldGroupCreate(handle, list(field_ids), self._unique(what))
        self._watches.field_groups.append(group)
        return group

    def _drop_watches(self) -> None:
        """Remove what the previous discovery created, when its connection is still the current one."""
        watches, self._watches = self._watches, None
        if watches is None or watches.handle is not self._handle:
            return
        agent, error = self._b.agent, self._b.structs.DCGMError
        calls: list[tuple[Any, tuple[Any, ...]]] = [(agent.dcgmUnwatchFields, pair) for pair in watches.watched]
        calls += [(agent.dcgmFieldGroupDestroy, (fg,)) for fg in watches.field_groups]
        calls += [(agent.dcgmGroupDestroy, (group,)) for group in watches.groups]
        for call, args in calls:
            try:
                call(watches.handle, *args)
            except error as exc:
                log.debug("cleaning up DCGM watches: %s", exc)

    # -- sampling ---------------------------------------------------------------------------

    async def sample(self, gpu: Gpu) -> GpuSample:
        return await in_driver_thread(partial(self._sample, gpu))

    def _sample(self, gpu: Gpu) -> GpuSample:
        with self._lock:
            handle = self._connected()
            state = self._state
        if state is None or state.handle is not handle:
            raise TopologyChangedError("DCGM watches must be re-created on the new host-engine connection")
        mapped = state.gpus.get(gpu.index)
        if mapped is None:
            raise TopologyChangedError(f"GPU {gpu.index} is no longer known to DCGM")
        agent = self._b.agent
        try:
            if self._hierarchy(handle).get(mapped.gpu_id, ()) != mapped.signature:
                raise TopologyChangedError(f"GPU {gpu.index} was re-partitioned")
            gpu_values = agent.dcgmEntitiesGetLatestValues(
                handle, self._pairs([(FE_GPU, mapped.gpu_id)]), GPU_FIELDS, 0
            )
            profiled = profiled_entities(mapped)
            fields = list(MEMORY_FIELDS) if state.profiling_reason else list(INSTANCE_FIELDS)
            values = agent.dcgmEntitiesGetLatestValues(handle, self._pairs(profiled), fields, 0) if profiled else []
        except self._b.structs.DCGMError as exc:
            raise self._error(handle, exc) from None
        readings = self._readings([*gpu_values, *values])
        return Assembler(readings, state.profiling_reason).sample(gpu, mapped)

    def _hierarchy(self, handle: Any) -> dict[int, tuple[tuple[int, ...], ...]]:
        """Hierarchy signatures by DCGM GPU ID, read at most once per half interval for all GPUs."""
        with self._hierarchy_lock:
            now = self._monotonic()
            cached = self._hierarchy_cache
            if cached is not None and cached[1] is handle and now - cached[0] < self.interval / 2:
                return cached[2]
            hierarchy = self._b.agent.dcgmGetGpuInstanceHierarchy(handle)
            signatures = hierarchy_signatures(hierarchy.entityList[i] for i in range(int(hierarchy.count)))
            self._hierarchy_cache = (now, handle, signatures)
            return signatures

    def _readings(self, values: Iterable[Any]) -> dict[tuple[int, int, int], Reading]:
        """Field values by (entity group, entity ID, field ID); blanks and bad statuses carry a reason."""
        structs, fields, blank = self._b.structs, self._b.fields, self._b.value
        out: dict[tuple[int, int, int], Reading] = {}
        for fv in values:
            key = (int(fv.entityGroupId), int(fv.entityId), int(fv.fieldId))
            status = int(fv.status)
            if status in (structs.DCGM_ST_INSTANCE_NOT_FOUND, structs.DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND):
                raise TopologyChangedError(f"DCGM entity {key[1]} no longer exists")
            if status != structs.DCGM_ST_OK:
                out[key] = Reading(None, self._status(status))
                continue
            kind = chr(int(fv.fieldType))
            if kind == fields.DCGM_FT_DOUBLE:
                number: float = float(fv.value.dbl)
                if blank.DCGM_FP64_IS_BLANK(number):
                    out[key] = Reading(None, blank_reason(number - blank.DCGM_FP64_BLANK))
                    continue
            elif kind == fields.DCGM_FT_INT64:
                integer = int(fv.value.i64)
                if blank.DCGM_INT64_IS_BLANK(integer):
                    out[key] = Reading(None, blank_reason(integer - blank.DCGM_INT64_BLANK))
                    continue
                number = float(integer)
            else:
                out[key] = Reading(None, f"unexpected_type_{kind}")
                continue
            out[key] = Reading(number)
        return out

    async def close(self) -> None:
        await in_driver_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._drop_watches()
            if self._handle is not None:
                self._disconnect(self._handle)
                self._handle = None
            self._state = None
            self._shutdown_library()

    def _shutdown_library(self) -> None:
        try:
            self._b.agent.dcgmShutdown()
        except self._b.structs.DCGMError as exc:
            log.debug("dcgmShutdown: %s", exc)
