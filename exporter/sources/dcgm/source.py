"""The DCGM source: NVIDIA's Data Center GPU Manager, through the Python bindings DCGM installs.

The bindings are not on PyPI; they ship with the DCGM package and load `libdcgm.so.4`. The
source connects to a host engine (`nv-hostengine`, default localhost:5555) or starts an
embedded one, and maps DCGM's own GPU-instance and compute-instance entity IDs to NVML's IDs
through the GPU-instance hierarchy. One field group (profiling ratios and framebuffer, by field
number) is watched on every GPU instance, compute instance and MIG-disabled GPU; power,
temperature and framebuffer are watched on GPU entities only, since on an instance the first
two repeat the parent's value (and a MIG-enabled GPU entity is never asked for profiling). XID
errors (field 230) are watched on the GPU and its instances, in a field group of their own, and
counted from every value recorded since the last cycle (xids.py).

DCGM's entity IDs change on a re-partition and a host-engine restart loses every group and
watch, so both lead back to discovery, which re-maps the hierarchy and re-creates the
watches. Every blocking call runs in a thread.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import logging
import os
import re
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
    Entity,
    Field,
    Gpu,
    GpuInstance,
    GpuSample,
    Topology,
    XidErrors,
)
from exporter.sources.base import Finding, GpuError, Level, SourceUnavailableError, TopologyChangedError
from exporter.sources.dcgm.mapping import (
    FE_GPU,
    FE_GPU_CI,
    FE_GPU_I,
    FI_FB_TOTAL,
    FI_NVML_INDEX,
    FI_UUID,
    FI_XID_ERRORS,
    GONE,
    GPU_FIELDS,
    HEALTH_FIELDS,
    INSTANCE_FIELDS,
    IO_FIELDS,
    MEMORY_FIELDS,
    MIB,
    Assembler,
    GpuEntities,
    Reading,
    ValueDecoder,
    gpu_instance,
    hierarchy_signatures,
    profiled_entities,
    xid_scopes,
)
from exporter.sources.dcgm.xids import DcgmXids, values_since
from exporter.sources.driver_threads import in_driver_thread
from exporter.sources.xid import XidCounter

log = logging.getLogger(__name__)

ENV_BINDINGS = "MIG_EXPORTER_DCGM_BINDINGS"
# Where DCGM 4 and DCGM 3 packages install the Python bindings.
DEFAULT_BINDING_DIRS: tuple[str, ...] = (
    "/usr/share/datacenter-gpu-manager-4/bindings/python3",
    "/usr/local/dcgm/bindings/python3",
)
EMBEDDED = "embedded"

PROFILING_FIX = (
    "DCGM's profiling module must load in nv-hostengine: run it as root (check `dcgmi modules -l` and "
    "`dcgmi profile -l`); on Hopper, --source nvml reads activity through GPM instead"
)
LOST_FIX = "look for Xid 79 (fallen off the bus) in `dmesg`: the GPU needs a reset or a reboot"

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


def library_file(structs: ModuleType) -> str:
    """The libdcgm file the bindings load: libdcgm.so.4 for DCGM 4's, libdcgm.so.3 for DCGM 3's."""
    try:
        text = inspect.getsource(structs)
    except (OSError, TypeError):  # bindings installed without their .py source
        return "libdcgm.so"
    found = re.search(r"libdcgm\.so\.\d+", text)
    return found.group(0) if found else "libdcgm.so"


@dataclass(slots=True)
class _GpuWatch:
    """One GPU's groups and watches on one connection, and why they do not work when they do not.

    A GPU fails alone: its groups, watches and retries are its own, so a lost GPU never takes the
    others' watches with it.
    """

    mapped: GpuEntities
    groups: list[Any] = field(default_factory=list)
    watched: list[tuple[Any, Any]] = field(default_factory=list)
    profiling_reason: str = ""  # non-empty when profiling fields could not be watched on it
    health_reason: str = ""  # non-empty when the GPU-wide health fields could not be watched on it
    io_reason: str = ""  # non-empty when the profiling I/O rates could not be watched on it
    failure: GpuError | None = None  # set while it cannot be read; sampling raises it until a retry works
    listed: bool = True  # False for a GPU DCGM stopped listing, kept with its last layout
    retry_at: float = 0.0
    backoff: float = RECONNECT_MIN_S
    memory_seen: bool = False  # its framebuffer total has been read on this watch (a later blank means trouble)
    xid_reason: str = ""  # non-empty when field 230 (XIDs) could not be watched on it


@dataclass(slots=True)
class _Connection:
    """What the source created on one host-engine connection: shared field groups and each GPU's watches."""

    handle: Any
    field_groups: dict[str, Any] = field(default_factory=dict)
    gpus: dict[int, _GpuWatch] = field(default_factory=dict)  # by NVML index


@dataclass(frozen=True, slots=True)
class _Listing:
    """The GPUs DCGM supports now and each one's hierarchy, read at most once per half interval for all GPUs."""

    at: float
    handle: Any
    supported: frozenset[int]
    signatures: Mapping[int, tuple[tuple[int, ...], ...]]


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
        self._conn: _Connection | None = None
        self._retry_at = 0.0
        self._backoff = RECONNECT_MIN_S
        self._names = itertools.count(1)
        self._listing_lock = threading.Lock()
        self._listing_cache: _Listing | None = None
        self._known: dict[int, tuple[Gpu, int]] = {}  # NVML index -> last GPU discovered and its DCGM ID
        self._indexes: dict[int, int] = {}  # DCGM GPU ID -> NVML index, as last read
        self.decoder = ValueDecoder(bindings.structs, bindings.fields, bindings.value)
        self._xids = DcgmXids(XidCounter())

    # -- connection -------------------------------------------------------------------------

    def start(self) -> None:
        """Load libdcgm and connect once; raise SourceUnavailableError naming what is missing."""
        structs = self._b.structs
        try:
            structs._dcgmInit()
            self._b.agent.dcgmInit()
        except structs.DCGMError as exc:
            library = library_file(structs)
            raise SourceUnavailableError(
                f"DCGM library {library} could not be loaded ({exc}; bindings at {self._b.path}): install "
                f"the DCGM package these bindings belong to or add the directory of {library} to LD_LIBRARY_PATH"
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
                self._conn = None
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

    def _error(self, handle: Any, exc: Any) -> GpuError:
        """The sampler-facing error for a DCGMError raised by a call on `handle`."""
        structs = self._b.structs
        if exc.value == structs.DCGM_ST_CONNECTION_NOT_VALID:
            return self._lost(handle, exc)
        if exc.value in (structs.DCGM_ST_INSTANCE_NOT_FOUND, structs.DCGM_ST_COMPUTE_INSTANCE_NOT_FOUND):
            return TopologyChangedError(f"a MIG instance disappeared: {exc}")
        return GpuError(str(exc), reason=self.decoder.status(exc.value))

    # -- discovery --------------------------------------------------------------------------

    async def discover(self) -> Topology:
        return await in_driver_thread(self._discover)

    def _discover(self) -> Topology:
        with self._lock:
            handle = self._connected()
            try:
                return self._discover_on(handle)
            except self._b.structs.DCGMError as exc:
                raise self._error(handle, exc) from None

    def _discover_on(self, handle: Any) -> Topology:
        """Read the node and (re)create the watches of every GPU whose entities changed or that failed."""
        conn = self._conn
        if conn is None or conn.handle is not handle:
            conn = self._conn = _Connection(handle)
        gpus, mapping = self._read_topology(handle)
        built = False
        for index, mapped in mapping.items():
            watch = conn.gpus.get(index)
            if watch is not None and watch.mapped == mapped and watch.failure is None:
                continue  # unchanged and working: keep its watches and values
            if watch is not None:
                self._drop(conn, watch)
            conn.gpus[index] = watch = _GpuWatch(mapped)
            built |= self._build(conn, watch)
        for index in [i for i in conn.gpus if i not in mapping]:
            self._drop(conn, conn.gpus.pop(index))
        for index, (gpu, gpu_id) in self._known.items():
            if index not in gpus:
                # DCGM stopped listing a GPU it had (lost, or its status is not OK): keep its last layout, so its
                # series stay and are marked stale, and report it each cycle until DCGM lists it again.
                gpus[index] = gpu
                mapping[index] = GpuEntities(gpu_id, gpu.mig_enabled, {}, {}, ())
                failure = GpuError(
                    f"GPU {index}: DCGM no longer lists it as supported (lost, or its status is not OK)", "gpu_is_lost"
                )
                conn.gpus[index] = _GpuWatch(mapping[index], failure=failure, listed=False)
        if built:
            self._b.agent.dcgmUpdateAllFields(handle, 1)  # values exist only after a watch and an update
        self._known = {index: (gpus[index], mapping[index].gpu_id) for index in gpus}
        with self._listing_lock:
            self._listing_cache = None
        return Topology(tuple(gpus[i] for i in sorted(gpus)))

    def _read_topology(self, handle: Any) -> tuple[dict[int, Gpu], dict[int, GpuEntities]]:
        """Every GPU DCGM lists, by NVML index; a GPU whose attributes cannot be read is left out (and logged)."""
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
        gpus: dict[int, Gpu] = {}
        mapping: dict[int, GpuEntities] = {}
        signatures = hierarchy_signatures(entries)
        for gpu_id in gpu_ids:
            try:
                attrs = agent.dcgmGetDeviceAttributes(handle, gpu_id)
            except self._b.structs.DCGMError as exc:
                if exc.value == self._b.structs.DCGM_ST_CONNECTION_NOT_VALID:
                    raise
                log.warning("DCGM could not read GPU %d's attributes, leaving it out: %s", gpu_id, exc)
                continue
            mine = [e for e in gi_entries if int(e.parent.entityId) == gpu_id]
            index = self._nvml_index(gpu_id, live.get((FE_GPU, gpu_id, FI_NVML_INDEX)), mine)
            model = str(attrs.identifiers.deviceName)
            board = board_for_model(model)
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
            gpus[index] = Gpu(
                index=index,
                uuid=str(attrs.identifiers.uuid),
                model=model,
                board=board.key if board else None,
                driver_version=str(attrs.identifiers.driverVersion),
                mig_enabled=mig_enabled,
                memory_total_bytes=int(attrs.memoryUsage.fbTotal) * MIB,
                instances=tuple(sorted(instances, key=lambda i: i.gi)),
                pci_bus_id=str(attrs.identifiers.pciBusId),
            )
            mapping[index] = GpuEntities(gpu_id, mig_enabled, gis, cis, signatures.get(gpu_id, ()))
            self._indexes[gpu_id] = index
        return gpus, mapping

    def _nvml_index(self, gpu_id: int, field_52: object, gi_entries: Sequence[Any]) -> int:
        """NVML's index of DCGM GPU `gpu_id`: DCGM's field 52, else the hierarchy's, else as last read, else the ID."""
        if isinstance(field_52, float):
            return int(field_52)
        if gi_entries:
            return int(gi_entries[0].info.nvmlGpuIndex)
        return self._indexes.get(gpu_id, gpu_id)

    def _live_values(
        self, handle: Any, entities: Sequence[tuple[int, int]], field_ids: Sequence[int]
    ) -> dict[tuple[int, int, int], float | str]:
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
        out: dict[tuple[int, int, int], float | str] = {}
        for fv in values:
            reading = self.decoder.decode(fv)
            if reading.value is not None:
                out[(int(fv.entityGroupId), int(fv.entityId), int(fv.fieldId))] = reading.value
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

    def _build(self, conn: _Connection, watch: _GpuWatch) -> bool:
        """Create one GPU's groups and watches; on a DCGM error record it on the GPU alone. True when built."""
        structs, mapped = self._b.structs, watch.mapped
        try:
            gpu_group = self._group(conn, watch, "gpu", [(FE_GPU, mapped.gpu_id)])
            self._watch(conn, watch, gpu_group, "gpu", GPU_FIELDS)
            watch.health_reason = self._optional_watch(conn, watch, gpu_group, "health", list(HEALTH_FIELDS))
            profiled = profiled_entities(mapped)
            if profiled:
                group = gpu_group if not mapped.mig_enabled else self._group(conn, watch, "instances", profiled)
                try:
                    self._watch(conn, watch, group, "instance", INSTANCE_FIELDS)
                except structs.DCGMError as exc:
                    if exc.value not in self._profiling_refusals():
                        raise
                    watch.profiling_reason = self.decoder.status(exc.value)
                    log.warning(
                        "DCGM profiling fields cannot be watched on GPU %d (%s); reporting memory, power and "
                        "temperature",
                        self._indexes.get(mapped.gpu_id, mapped.gpu_id),
                        exc,
                    )
                    self._watch(conn, watch, group, "memory", MEMORY_FIELDS)
                else:
                    watch.io_reason = self._optional_watch(conn, watch, group, "io", list(IO_FIELDS))
        except structs.DCGMError as exc:
            if exc.value == structs.DCGM_ST_CONNECTION_NOT_VALID:
                raise
            index = self._indexes.get(mapped.gpu_id, mapped.gpu_id)
            self._drop(conn, watch)
            self._fail(watch, GpuError(f"GPU {index}: DCGM cannot watch it: {exc}", self.decoder.status(exc.value)))
            log.warning("%s; the other GPUs are not affected, retrying in %.0fs", watch.failure, watch.backoff)
            return False
        self._watch_xids(conn, watch, [gpu_group, *([group] if profiled and mapped.mig_enabled else [])])
        watch.failure = None
        watch.backoff = RECONNECT_MIN_S
        return True

    def _optional_watch(self, conn: _Connection, watch: _GpuWatch, group: Any, kind: str, field_ids: list[int]) -> str:
        """Watch fields a GPU may lack without losing the others: '' when watched, else DCGM's reason."""
        structs = self._b.structs
        try:
            self._watch(conn, watch, group, kind, field_ids)
        except structs.DCGMError as exc:
            if exc.value in (structs.DCGM_ST_CONNECTION_NOT_VALID, structs.DCGM_ST_GPU_IS_LOST):
                raise
            log.warning("DCGM cannot watch the %s fields (%s); those series are absent", kind, exc)
            return self.decoder.status(exc.value)
        return ""

    def _profiling_refusals(self) -> tuple[int, ...]:
        """Statuses that mean the profiling fields cannot be watched here, while memory and power still can."""
        structs = self._b.structs
        return (
            structs.DCGM_ST_PROFILING_NOT_SUPPORTED,
            structs.DCGM_ST_MODULE_NOT_LOADED,
            structs.DCGM_ST_NOT_SUPPORTED,
            structs.DCGM_ST_PROFILING_LIBRARY_ERROR,
            structs.DCGM_ST_PROFILING_MULTI_PASS,
            structs.DCGM_ST_REQUIRES_ROOT,
        )

    def _fail(self, watch: _GpuWatch, failure: GpuError) -> GpuError:
        """Mark a GPU failing (and return why); its next rebuild is due after a backoff doubling up to 30 s."""
        watch.failure = failure
        watch.retry_at = self._monotonic() + watch.backoff
        watch.backoff = min(watch.backoff * 2, RECONNECT_MAX_S)
        return failure

    def _unique(self, what: str) -> str:
        # Group and field-group names must be unique on the engine, which other clients share.
        return f"mig-exporter-{os.getpid()}-{next(self._names)}-{what}"

    def _group(self, conn: _Connection, watch: _GpuWatch, what: str, entities: Iterable[tuple[int, int]]) -> Any:
        agent = self._b.agent
        group = agent.dcgmGroupCreate(conn.handle, self._b.structs.DCGM_GROUP_EMPTY, self._unique(what))
        watch.groups.append(group)
        for entity_group, entity_id in entities:
            agent.dcgmGroupAddEntity(conn.handle, group, entity_group, entity_id)
        return group

    def _watch(self, conn: _Connection, watch: _GpuWatch, group: Any, kind: str, field_ids: Sequence[int]) -> None:
        """Watch `field_ids` on `group` at the sampling interval (the field group of each kind is shared)."""
        field_group = conn.field_groups.get(kind)
        if field_group is None:
            field_group = conn.field_groups[kind] = self._b.agent.dcgmFieldGroupCreate(
                conn.handle, list(field_ids), self._unique(f"{kind}-fields")
            )
        update_us = max(int(self.interval * 1_000_000), 1000)
        keep_age = max(10.0, 4 * self.interval)
        self._b.agent.dcgmWatchFields(conn.handle, group, field_group, update_us, keep_age, 0)
        watch.watched.append((group, field_group))

    def _drop(self, conn: _Connection, watch: _GpuWatch) -> None:
        """Remove one GPU's watches and groups, when their connection is still the current one."""
        watched, groups = watch.watched, watch.groups
        watch.watched, watch.groups = [], []
        if conn.handle is not self._handle:
            return
        agent, error = self._b.agent, self._b.structs.DCGMError
        calls: list[tuple[Any, tuple[Any, ...]]] = [(agent.dcgmUnwatchFields, pair) for pair in watched]
        calls += [(agent.dcgmGroupDestroy, (group,)) for group in groups]
        for call, args in calls:
            try:
                call(conn.handle, *args)
            except error as exc:
                log.debug("cleaning up DCGM watches: %s", exc)

    def _drop_all(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        for watch in conn.gpus.values():
            self._drop(conn, watch)
        if conn.handle is not self._handle:
            return
        for field_group in conn.field_groups.values():
            try:
                self._b.agent.dcgmFieldGroupDestroy(conn.handle, field_group)
            except self._b.structs.DCGMError as exc:
                log.debug("cleaning up DCGM field groups: %s", exc)

    # -- sampling ---------------------------------------------------------------------------

    async def sample(self, gpu: Gpu) -> GpuSample:
        return self._with_xids(await in_driver_thread(partial(self._sample, gpu)))

    def _sample(self, gpu: Gpu) -> GpuSample:
        with self._lock:
            handle = self._connected()
            conn = self._conn
        if conn is None or conn.handle is not handle:
            raise TopologyChangedError("DCGM watches must be re-created on the new host-engine connection")
        watch = conn.gpus.get(gpu.index)
        if watch is None:
            raise TopologyChangedError(f"GPU {gpu.index} is no longer known to DCGM")
        agent = self._b.agent
        try:
            listing = self._listing(handle)
            self._read_xids(conn, gpu.index, watch)  # first: an XID 79 comes just before the GPU's reads fail
            if watch.failure is not None:
                self._retry(conn, watch, watch.failure, listing)
            mapped = watch.mapped
            if mapped.gpu_id not in listing.supported:
                raise self._fail(
                    watch, GpuError(f"GPU {gpu.index}: DCGM no longer lists it as supported", "gpu_is_lost")
                )
            if listing.signatures.get(mapped.gpu_id, ()) != mapped.signature:
                raise TopologyChangedError(f"GPU {gpu.index} was re-partitioned")
            gpu_fields = GPU_FIELDS if watch.health_reason else [*GPU_FIELDS, *HEALTH_FIELDS]
            gpu_values = agent.dcgmEntitiesGetLatestValues(
                handle, self._pairs([(FE_GPU, mapped.gpu_id)]), gpu_fields, 0
            )
            profiled = profiled_entities(mapped)
            fields = list(MEMORY_FIELDS) if watch.profiling_reason else list(INSTANCE_FIELDS)
            if not watch.profiling_reason and not watch.io_reason:
                fields += IO_FIELDS
            values = agent.dcgmEntitiesGetLatestValues(handle, self._pairs(profiled), fields, 0) if profiled else []
        except self._b.structs.DCGMError as exc:
            raise self._error(handle, exc) from None
        readings = self._readings([*gpu_values, *values])
        self._check_answering(gpu.index, watch, readings.get((FE_GPU, mapped.gpu_id, FI_FB_TOTAL)))
        return Assembler(readings, watch.profiling_reason, watch.health_reason, watch.io_reason).sample(gpu, mapped)

    def _retry(self, conn: _Connection, watch: _GpuWatch, failure: GpuError, listing: _Listing) -> None:
        """Rebuild a failing GPU's watches when its backoff is over; raise its failure while it still fails."""
        if self._monotonic() < watch.retry_at:
            raise failure
        if watch.mapped.gpu_id not in listing.supported:
            raise self._fail(watch, failure)
        if not watch.listed or listing.signatures.get(watch.mapped.gpu_id, ()) != watch.mapped.signature:
            raise TopologyChangedError(f"{failure}, and DCGM lists it again: discovering it anew")
        with self._lock:
            if conn is not self._conn:
                raise TopologyChangedError("DCGM watches must be re-created on the new host-engine connection")
            self._drop(conn, watch)
            if not self._build(conn, watch):
                raise watch.failure or failure  # _build recorded why the rebuild failed
            self._b.agent.dcgmUpdateAllFields(conn.handle, 1)
        log.info("GPU watches re-created after: %s", failure)

    def _check_answering(self, index: int, watch: _GpuWatch, total: Reading | None) -> None:
        """Raise when a GPU whose framebuffer total was read before now reads blank: it stopped answering.

        DCGM writes blanks (status OK) for every field of a GPU it cannot reach, so this is how a GPU lost
        after its watches were set up shows, while DCGM may still list it.
        """
        if total is not None and total.number is not None:
            watch.memory_seen = True
            return
        if watch.memory_seen and total is not None and total.reason == "no_data":
            watch.memory_seen = False
            message = f"GPU {index}: DCGM returns only blank values for it (lost, or not answering)"
            raise self._fail(watch, GpuError(message, "no_data"))

    def _listing(self, handle: Any) -> _Listing:
        """The supported GPUs and hierarchy signatures, read at most once per half interval for all GPUs."""
        with self._listing_lock:
            now = self._monotonic()
            cached = self._listing_cache
            if cached is not None and cached.handle is handle and now - cached.at < self.interval / 2:
                return cached
            agent = self._b.agent
            supported = frozenset(int(g) for g in agent.dcgmGetAllSupportedDevices(handle))
            hierarchy = agent.dcgmGetGpuInstanceHierarchy(handle)
            signatures = hierarchy_signatures(hierarchy.entityList[i] for i in range(int(hierarchy.count)))
            self._listing_cache = _Listing(now, handle, supported, signatures)
            return self._listing_cache

    def _readings(self, values: Iterable[Any]) -> dict[tuple[int, int, int], Reading]:
        """Field values by (entity group, entity ID, field ID); blanks and bad statuses carry a reason."""
        out: dict[tuple[int, int, int], Reading] = {}
        for fv in values:
            key = (int(fv.entityGroupId), int(fv.entityId), int(fv.fieldId))
            reading = self.decoder.decode(fv)
            if reading.reason in GONE:
                raise TopologyChangedError(f"DCGM entity {key[1]} no longer exists")
            out[key] = reading
        return out

    def _watch_xids(self, conn: _Connection, watch: _GpuWatch, groups: list[Any]) -> None:
        """Watch field 230 on the GPU and its instances; a refusal leaves XIDs out with the reason, the rest read."""
        structs = self._b.structs
        try:
            for group in groups:
                self._watch(conn, watch, group, "xid", (FI_XID_ERRORS,))
        except structs.DCGMError as exc:
            if exc.value == structs.DCGM_ST_CONNECTION_NOT_VALID:
                raise
            watch.xid_reason = self.decoder.status(exc.value)
            index = self._indexes.get(watch.mapped.gpu_id, watch.mapped.gpu_id)
            log.warning("DCGM cannot watch XIDs on GPU %d (%s); its other fields are read as before", index, exc)

    def _read_xids(self, conn: _Connection, index: int, watch: _GpuWatch) -> None:
        """Count the XIDs DCGM recorded on the GPU and its instances since the last ones counted."""
        field_group = conn.field_groups.get("xid")
        groups = [(group, fg) for group, fg in watch.watched if fg is field_group]
        if watch.xid_reason or not groups:
            return
        try:
            readings = values_since(self._b.agent, conn.handle, groups, self._xids.since(index), self.decoder)
        except self._b.structs.DCGMError as exc:
            if exc.value == self._b.structs.DCGM_ST_CONNECTION_NOT_VALID:
                raise
            log.debug("reading XIDs of GPU %d failed: %s", index, exc)  # the GPU's own read reports the failure
            return
        self._xids.count(index, xid_scopes(watch.mapped), readings)

    def _with_xids(self, sample: GpuSample) -> GpuSample:
        """The sample with the GPU's XID count so far, or why its XIDs cannot be read."""
        conn = self._conn
        watch = conn.gpus.get(sample.gpu) if conn is not None else None
        values, unsupported = dict(sample.values), dict(sample.unsupported)
        if watch is not None and watch.xid_reason:
            unsupported[Field.XID_ERRORS] = watch.xid_reason
        else:
            whole = Entity(sample.gpu)
            values[whole] = {**values.get(whole, {}), Field.XID_ERRORS: self._xids.counter.total(sample.gpu)}
        return GpuSample(gpu=sample.gpu, values=values, unsupported=unsupported)

    def xid_errors(self) -> XidErrors:
        """XIDs counted from DCGM's field 230 since the source started."""
        return self._xids.counter.snapshot()

    # -- doctor -------------------------------------------------------------------------------

    async def describe(self) -> list[Finding]:
        """Bindings, library version, host engine, profiling module, and each discovered GPU's watches."""
        return await in_driver_thread(self._describe)

    def _describe(self) -> list[Finding]:
        agent, structs = self._b.agent, self._b.structs
        found = [Finding("DCGM", "bindings", Level.OK, f"{self._b.path} (they load {library_file(structs)})")]
        try:
            build = str(agent.dcgmVersionInfo().rawBuildInfoString)
            version = dict(kv.split(":", 1) for kv in build.split(";") if ":" in kv).get("version", build)
            found.append(Finding("DCGM", "library", Level.OK, f"libdcgm {version}"))
        except (structs.DCGMError, AttributeError) as exc:
            found.append(Finding("DCGM", "library", Level.INFO, f"version unknown ({exc})"))
        with self._lock:
            handle, conn = self._handle, self._conn
        where = "an embedded host engine" if self.host == EMBEDDED else f"the host engine at {self.host}"
        if handle is None:
            fix = "start nv-hostengine, or point --dcgm-host at it"
            return [*found, Finding("DCGM", "host engine", Level.FAIL, f"not connected to {where}", fix)]
        found.append(Finding("DCGM", "host engine", Level.OK, f"connected to {where}"))
        try:
            found.append(self._profiling_module(handle))
            listed = {int(g) for g in agent.dcgmGetAllSupportedDevices(handle)}
            for gpu_id in sorted({int(g) for g in agent.dcgmGetAllDevices(handle)} - listed):
                message = f"DCGM knows GPU ID {gpu_id} but does not list it as supported (lost, or not supported)"
                found.append(Finding("DCGM", f"GPU ID {gpu_id}", Level.WARN, message, LOST_FIX))
        except structs.DCGMError as exc:
            found.append(Finding("DCGM", "host engine", Level.WARN, f"could not list modules and GPUs: {exc}"))
        for index, watch in sorted(conn.gpus.items()) if conn is not None else ():
            found.append(self._describe_watch(index, watch))
        return found

    def _profiling_module(self, handle: Any) -> Finding:
        structs = self._b.structs
        names = {
            value: re.sub(r"(?<!^)(?=[A-Z])", " ", name.removeprefix("DcgmModuleStatus")).lower()
            for name, value in vars(structs).items()
            if name.startswith("DcgmModuleStatus") and isinstance(value, int)
        }
        statuses = self._b.agent.dcgmModuleGetStatuses(handle)
        for i in range(int(statuses.numStatuses)):
            entry = statuses.statuses[i]
            if int(entry.id) == structs.DcgmModuleIdProfiling:
                status = int(entry.status)
                name = names.get(status, f"status {status}")
                if status == structs.DcgmModuleStatusLoaded:
                    return Finding("DCGM", "profiling module", Level.OK, "loaded")
                return Finding("DCGM", "profiling module", Level.WARN, name, PROFILING_FIX)
        return Finding("DCGM", "profiling module", Level.WARN, "not reported by the host engine", PROFILING_FIX)

    def _describe_watch(self, index: int, watch: _GpuWatch) -> Finding:
        subject = f"GPU {index}"
        if watch.failure is not None:
            return Finding("DCGM", subject, Level.FAIL, str(watch.failure), LOST_FIX)
        if watch.profiling_reason:
            message = f"profiling fields cannot be watched ({watch.profiling_reason}): no activity series"
            return Finding("DCGM", subject, Level.FAIL, message, PROFILING_FIX)
        what = "its GPU instances and compute instances" if watch.mapped.mig_enabled else "the whole GPU"
        message = f"watching activity and memory on {what} every {self.interval:g}s; power, temperature on the GPU"
        return Finding("DCGM", subject, Level.OK, message)

    async def close(self) -> None:
        await in_driver_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._drop_all()
            if self._handle is not None:
                self._disconnect(self._handle)
                self._handle = None
            self._shutdown_library()

    def _shutdown_library(self) -> None:
        try:
            self._b.agent.dcgmShutdown()
        except self._b.structs.DCGMError as exc:
            log.debug("dcgmShutdown: %s", exc)
