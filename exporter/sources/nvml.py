"""The NVML source: MIG discovery through the unprivileged MIG-handle path, activity through GPM.

The `pynvml` module (nvidia-ml-py) is a constructor parameter, so tests run this code over a
fake module backed by the simulator. Every NVML call runs in a worker thread: one thread per
GPU per discovery or sampling cycle, so a hung call blocks that GPU only. While a GPU's
previous call has not returned, no new call is made on it (a hung driver cannot pile up
threads) and the GPU is reported as hung.

Handles are resolved again on every discovery: a MIG device handle names a slot, and after a
re-partition the same slot can hold another instance. Each cycle checks every MIG handle's
UUID against the one discovered and asks for a handle in each slot that was empty (at most
seven calls per GPU, each answered NotFound while nothing changed); a mismatch, an emptied
slot or a filled one raises TopologyChangedError, so the sampler re-discovers at once.

A read the driver refuses (NoPermission, NotSupported, FunctionNotFound) leaves its value
absent with the reason; it never fails the GPU.

GPM ratios need two readings: each GPU instance and compute instance owns two GPM sample
buffers, allocated on first use and reused, and the ratios are computed between the
previous reading and this one. The first cycle after an instance appears has no ratios yet.

XID errors come from NVML's event API, waited for in a thread of their own (nvml_events.py) and
counted apart from the samples; discovery registers each GPU for them.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any, TypeVar

from exporter.mig.catalog import COMPUTE_SLICES, MEMORY_SLICES, Board, board_for_model
from exporter.model import (
    ACTIVITY_FIELDS,
    ComputeInstance,
    Entity,
    Field,
    Gpu,
    GpuInstance,
    GpuSample,
    Topology,
    XidErrors,
)
from exporter.sources.base import Finding, GpuError, Level, SourceUnavailableError, TopologyChangedError
from exporter.sources.driver_threads import in_driver_thread
from exporter.sources.nvml_events import XidEvents
from exporter.sources.xid import XidCounter
from exporter.units import GIB

log = logging.getLogger(__name__)

T = TypeVar("T")

# GPM metric IDs (nvml.h nvmlGpmMetricId_t): the ratios are percentages 0..100, PCIe traffic is MiB/s.
GPM_METRICS: tuple[tuple[Field, int], ...] = (
    (Field.GR_ENGINE_ACTIVE, 1),  # NVML_GPM_METRIC_GRAPHICS_UTIL
    (Field.SM_ACTIVE, 2),  # NVML_GPM_METRIC_SM_UTIL
    (Field.SM_OCCUPANCY, 3),  # NVML_GPM_METRIC_SM_OCCUPANCY
    (Field.TENSOR_ACTIVE, 5),  # NVML_GPM_METRIC_ANY_TENSOR_UTIL
    (Field.DRAM_ACTIVE, 10),  # NVML_GPM_METRIC_DRAM_BW_UTIL
    (Field.PCIE_TX_RATE, 20),  # NVML_GPM_METRIC_PCIE_TX_PER_SEC
    (Field.PCIE_RX_RATE, 21),  # NVML_GPM_METRIC_PCIE_RX_PER_SEC
)
GPM_FIELDS: tuple[Field, ...] = tuple(fld for fld, _ in GPM_METRICS)
GPM_BYTE_RATES = frozenset({Field.PCIE_TX_RATE, Field.PCIE_RX_RATE})
MIB = 1024**2

# nvmlDeviceGetFieldValues: field IDs (nvml.h NVML_FI_*) and the scope of all NVLinks (UINT_MAX, as DCGM passes it).
FI_DEV_MEMORY_TEMP = 82
FI_DEV_NVLINK_THROUGHPUT_DATA_TX = 138  # KiB, a counter
FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 139
ALL_NVLINKS = 0xFFFFFFFF
KIB = 1024
# c_nvmlValue_t member for each nvmlValueType_t (NVML_VALUE_TYPE_*).
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
# Read on the GPU handle every cycle, one call each: (field, NVML function, arguments, scale to base units).
# The clock type arguments are nvmlClockType_t (NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2).
_GPU_READS: tuple[tuple[Field, str, tuple[int, ...], float], ...] = (
    (Field.SM_CLOCK, "nvmlDeviceGetClockInfo", (1,), 1e6),  # MHz
    (Field.MEMORY_CLOCK, "nvmlDeviceGetClockInfo", (2,), 1e6),
    (Field.ENERGY, "nvmlDeviceGetTotalEnergyConsumption", (), 1e-3),  # millijoules
    (Field.PCIE_REPLAYS, "nvmlDeviceGetPcieReplayCounter", (), 1.0),
)

# NVML documents that two GPM samples must be at least 100 ms apart.
GPM_MIN_INTERVAL = 0.1

# nvmlReturn_t codes used here (stable across nvidia-ml-py releases).
NVML_SUCCESS = 0
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25

# A read that fails with one of these is unavailable here (reported absent, with the reason), not a GPU failure.
_UNAVAILABLE = (NVML_ERROR_NO_PERMISSION, NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND)

# The `reason` label for the NVML errors an operator can act on; others get a name derived from the code.
_REASONS = {
    1: "uninitialized",
    2: "invalid_argument",
    3: "not_supported",
    4: "no_permission",
    6: "not_found",
    9: "driver_not_loaded",
    10: "timeout",
    12: "library_not_found",
    13: "function_not_found",
    15: "gpu_lost",
    16: "reset_required",
    17: "operating_system",
    18: "driver_version_mismatch",
    20: "insufficient_memory",
    21: "no_data",
    28: "gpu_not_found",
    999: "unknown",
}

# What lets NVML answer the privileged queries (GPU-instance APIs, the parent's memory with MIG on).
PRIVILEGE_FIX = (
    "run the exporter as root or with CAP_SYS_ADMIN (in a container: --cap-add SYS_ADMIN, --user 0 and "
    "NVIDIA_MIG_MONITOR_DEVICES=all)"
)

# nvidia-smi names GPU-instance profiles "MIG 3g.40gb"; the metric labels carry "3g.40gb".
_PROFILE_PREFIX = "MIG "

# Memory slices of the usual GPU-instance profile with this many compute slices (1g.*, 2g, 3g, 4g, 7g).
_MEMORY_SLICES_BY_COMPUTE = {1: 1, 2: 2, 3: 4, 4: 4, 7: 8}


def error_reason(code: int) -> str:
    """The `reason` label for an NVML return code."""
    return _REASONS.get(code, f"nvml_error_{code}")


def load_pynvml() -> ModuleType:
    """Import nvidia-ml-py's `pynvml`; raise SourceUnavailableError when it is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise SourceUnavailableError(
            f"NVML could not be loaded: the nvidia-ml-py package is not installed ({exc}); install mig-exporter[nvml]"
        ) from None


@dataclass
class _GpmBuffers:
    """Two GPM sample buffers of one entity, alternating as `previous` and `current`."""

    samples: list[Any]
    identity: object  # what the buffers were last read for; a change discards `previous`
    taken_at: float | None = None  # monotonic time of the reading in samples[0]
    last: dict[Field, float] = field(default_factory=dict)  # ratios from the last computation


@dataclass(frozen=True)
class _GpmRead:
    """One GPM reading to take: for which entity, of what identity, and the NVML call that fills a buffer."""

    entity: Entity
    identity: object
    take: Callable[[Any], object]


@dataclass(frozen=True)
class _MigDevice:
    """A compute instance as discovered: its MIG device slot, handle and UUID."""

    gi: int
    ci: int
    slot: int
    handle: Any
    uuid: str


@dataclass(frozen=True)
class _GpuHandles:
    """What sampling one GPU needs, resolved at discovery; replaced whole on the next one."""

    gpu: Gpu
    handle: Any
    gpm: bool
    parent_memory: bool  # whether the parent handle's memory info is readable (privileged with MIG on)
    driver_total: bool  # whether gpu.memory_total_bytes came from the driver (else an estimate, not published)
    devices: tuple[_MigDevice, ...]
    empty_slots: tuple[int, ...] = ()  # MIG device slots without a device at discovery, probed every cycle


class NvmlSource:
    """Reads MIG GPUs through NVML. `nvml` is the `pynvml` module (or a stand-in with its API)."""

    name = "nvml"

    def __init__(self, nvml: ModuleType, clock: Callable[[], float] = time.monotonic) -> None:
        self._nvml = nvml
        self._clock = clock
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise SourceUnavailableError(f"NVML could not be loaded: nvmlInit failed: {exc}") from None
        self._handles: dict[int, _GpuHandles] = {}
        self._busy: dict[int, object] = {}  # GPU index -> token of the call running on it
        self._gpm: dict[int, dict[Entity, _GpmBuffers]] = {}  # per GPU; touched only by that GPU's call
        self._metrics_get: dict[int, Any] = {}  # one nvmlGpmMetricsGet struct per GPU, reused
        self._nvlink: dict[int, tuple[float, float]] = {}  # per GPU: (time, NVLink bytes) of the last reading
        self._closed = False
        self._memory_v1 = False  # set when the driver lacks nvmlDeviceGetMemoryInfo_v2
        self._totals: dict[str, int] = {}  # GPU UUID -> memory total the driver reported once
        self._left_out: dict[int, str] = {}  # GPU index -> why the last discovery could not read it at all
        self._xids = XidCounter()
        self._events = XidEvents(nvml, self._xids)  # XID critical-error events, in their own thread

    # -- threads ------------------------------------------------------------------------------

    async def _on_gpu(self, index: int, fn: Callable[[], T]) -> T:
        """Run `fn` (NVML calls on one GPU) in a thread; refuse while an earlier call on that GPU runs."""
        if index in self._busy:
            raise GpuError(f"GPU {index}: an earlier NVML call has not returned", reason="hung")
        token = object()
        self._busy[index] = token
        started = threading.Event()

        def run() -> T:
            started.set()
            try:
                return fn()
            finally:
                if self._busy.get(index) is token:
                    del self._busy[index]

        try:
            return await in_driver_thread(run)
        except asyncio.CancelledError:
            if not started.is_set() and self._busy.get(index) is token:
                del self._busy[index]  # never started: the GPU is free again
            raise

    @contextmanager
    def _errors(self, index: int) -> Iterator[None]:
        """Turn NVML errors into the source's errors, naming the GPU."""
        try:
            yield
        except self._nvml.NVMLError as exc:
            code = int(exc.value)
            if code == NVML_ERROR_NOT_FOUND:
                raise TopologyChangedError(f"GPU {index}: a MIG device is gone ({exc})") from None
            raise GpuError(f"GPU {index}: {exc}", reason=error_reason(code)) from None

    # -- discovery ----------------------------------------------------------------------------

    async def discover(self) -> Topology:
        count, driver = await in_driver_thread(self._system)
        indexes = range(count)
        results = await asyncio.gather(
            *(self._on_gpu(i, partial(self._discover_gpu, i, driver)) for i in indexes),
            return_exceptions=True,
        )
        handles: dict[int, _GpuHandles] = {}
        self._left_out = {}
        for index, result in zip(indexes, results, strict=True):
            if isinstance(result, _GpuHandles):
                handles[index] = result
            elif isinstance(result, GpuError) and index in self._handles:
                # Keep the GPU (lost, hung, failing) with its last layout: its sampling then fails
                # and is counted each cycle, and its series stay marked stale instead of vanishing.
                log.warning("discovery of GPU %d failed, keeping its last layout: %s", index, result)
                handles[index] = self._handles[index]
            elif isinstance(result, GpuError):
                log.warning("discovery left out GPU %d: %s", index, result)
                self._left_out[index] = str(result)
            elif isinstance(result, BaseException):
                raise result
        self._handles = handles
        return Topology(tuple(h.gpu for h in handles.values()))

    def _system(self) -> tuple[int, str]:
        """GPU count and driver version, in a worker thread."""
        nvml = self._nvml
        try:
            return int(nvml.nvmlDeviceGetCount()), _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError as exc:
            raise GpuError(f"NVML: {exc}", reason=error_reason(int(exc.value))) from None

    def _discover_gpu(self, index: int, driver: str) -> _GpuHandles:
        """Everything about one GPU, in its worker thread."""
        nvml = self._nvml
        with self._errors(index):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            self._events.watch(index, handle, error_reason)
            model = _text(nvml.nvmlDeviceGetName(handle))
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            board = board_for_model(model)
            pci = self._optional(lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId))
            mig_enabled, mig_pending = self._mig_mode(handle)
            gpm = self._gpm_supported(handle)
            parent_total = self._parent_total(handle)
            if parent_total is not None:
                self._totals[uuid] = parent_total
            driver_total = self._totals.get(uuid)
            devices: list[_MigDevice] = []
            empty: list[int] = []
            instances: tuple[GpuInstance, ...] = ()
            if mig_enabled:
                devices, empty, instances = self._discover_mig(handle, board, driver_total)
        memory_total = driver_total
        if memory_total is None:  # the topology needs a size; this estimate is never published as a value
            memory_total = int(board.memory_gib * GIB) if board else sum(i.memory_total_bytes for i in instances)
        gpu = Gpu(
            index=index,
            uuid=uuid,
            model=model,
            board=board.key if board else None,
            driver_version=driver,
            mig_enabled=mig_enabled,
            mig_pending=mig_pending,
            memory_total_bytes=memory_total,
            instances=instances,
            pci_bus_id=pci or "",
        )
        return _GpuHandles(
            gpu, handle, gpm, parent_total is not None, driver_total is not None, tuple(devices), tuple(empty)
        )

    def _mig_mode(self, handle: Any) -> tuple[bool, bool | None]:
        """Current and pending MIG mode; (False, None) on GPUs without MIG."""
        try:
            current, pending = self._nvml.nvmlDeviceGetMigMode(handle)
        except self._nvml.NVMLError as exc:
            if int(exc.value) in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND):
                return False, None
            raise
        return bool(current), bool(pending)

    def _gpm_supported(self, handle: Any) -> bool:
        """Whether the GPU has GPM (Hopper and newer)."""
        try:
            return bool(self._nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
        except self._nvml.NVMLError as exc:
            if int(exc.value) in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND):
                return False
            raise

    def _memory(self, handle: Any) -> Any:
        """Memory info v2, whose `used` excludes the driver's reserved memory; v1 on drivers without v2."""
        nvml = self._nvml
        if not self._memory_v1:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
            except nvml.NVMLError as exc:
                if int(exc.value) not in (NVML_ERROR_FUNCTION_NOT_FOUND, NVML_ERROR_ARGUMENT_VERSION_MISMATCH):
                    raise
                log.info("this driver has no nvmlDeviceGetMemoryInfo_v2; memory used includes reserved memory")
                self._memory_v1 = True
        return nvml.nvmlDeviceGetMemoryInfo(handle)

    def _parent_total(self, handle: Any) -> int | None:
        """The GPU's memory total as the driver reports it, or None where it refuses (MIG on, unprivileged).

        Memory info v1 is asked when v2 is refused: both read the same total, and a driver may permit one only.
        """
        nvml = self._nvml
        try:
            return int(self._memory(handle).total)
        except nvml.NVMLError as exc:
            if int(exc.value) not in _UNAVAILABLE:
                raise
        if self._memory_v1:
            return None
        return self._optional(lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total))

    def _optional(
        self, read: Callable[[], T], reasons: dict[Field, str] | None = None, fld: Field | None = None
    ) -> T | None:
        """`read()`, or None when NVML refuses it for lack of privileges or support (its reason kept under `fld`)."""
        try:
            return read()
        except self._nvml.NVMLError as exc:
            code = int(exc.value)
            if code not in _UNAVAILABLE:
                raise
            if reasons is not None and fld is not None:
                reasons.setdefault(fld, error_reason(code))
            return None

    def _discover_mig(
        self, handle: Any, board: Board | None, parent_total: int | None
    ) -> tuple[list[_MigDevice], list[int], tuple[GpuInstance, ...]]:
        """MIG devices through the unprivileged MIG-handle path; profiles and placements if permitted."""
        nvml = self._nvml
        devices: list[_MigDevice] = []
        empty: list[int] = []
        by_gi: dict[int, list[tuple[_MigDevice, Any, int]]] = {}
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError as exc:
                if int(exc.value) == NVML_ERROR_NOT_FOUND:
                    empty.append(slot)  # slots are sparse
                    continue
                raise
            gi = int(nvml.nvmlDeviceGetGpuInstanceId(mig))
            ci = int(nvml.nvmlDeviceGetComputeInstanceId(mig))
            device = _MigDevice(gi, ci, slot, mig, _text(nvml.nvmlDeviceGetUUID(mig)))
            attributes = nvml.nvmlDeviceGetAttributes(mig)
            memory = int(self._memory(mig).total)
            devices.append(device)
            by_gi.setdefault(gi, []).append((device, attributes, memory))
        privileged = self._gi_details(handle, sorted(by_gi))
        instances = []
        for gi, members in sorted(by_gi.items()):
            members.sort(key=lambda m: m[0].ci)
            attributes, memory = members[0][1], members[0][2]
            compute = int(attributes.gpuInstanceSliceCount)
            start: int | None
            if gi in privileged:
                profile, profile_id, start, size = privileged[gi]
            else:  # without privileges the placement is unknown
                profile, profile_id, size = _derive_profile(attributes, memory, board, parent_total)
                start = None
            cis = tuple(
                ComputeInstance(
                    gi=gi,
                    ci=d.ci,
                    profile=_ci_profile_name(int(a.computeInstanceSliceCount), compute, profile),
                    compute_slices=int(a.computeInstanceSliceCount),
                    mig_uuid=d.uuid,
                )
                for d, a, _ in members
            )
            instances.append(
                GpuInstance(
                    gi=gi,
                    profile=profile,
                    profile_id=profile_id,
                    placement_start=start,
                    placement_size=size,
                    compute_slices=compute,
                    memory_slices=size,
                    memory_total_bytes=memory,
                    compute_instances=cis,
                )
            )
        return devices, empty, tuple(instances)

    def _gi_details(self, handle: Any, gis: list[int]) -> dict[int, tuple[str, int, int, int]]:
        """Profile name, profile ID and placement of each GPU instance, through the GI APIs.

        These need privileges; without them (NoPermission) the result is empty and the caller
        derives profiles from the MIG devices' attributes.
        """
        nvml = self._nvml
        if not gis:
            return {}
        try:
            names: dict[int, str] = {}
            for enum in range(int(getattr(nvml, "NVML_GPU_INSTANCE_PROFILE_COUNT", 0))):
                try:
                    info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, enum, version=2)
                except nvml.NVMLError as exc:
                    if int(exc.value) == NVML_ERROR_NOT_SUPPORTED:
                        continue  # this board lacks the profile
                    if int(exc.value) == NVML_ERROR_INVALID_ARGUMENT:
                        break  # past the driver's last profile
                    raise
                names[int(info.id)] = _text(info.name).removeprefix(_PROFILE_PREFIX)
            out = {}
            for gi in gis:
                gi_info = nvml.nvmlGpuInstanceGetInfo(nvml.nvmlDeviceGetGpuInstanceById(handle, gi))
                profile_id = int(gi_info.profileId)
                if profile_id not in names:
                    continue
                out[gi] = (names[profile_id], profile_id, int(gi_info.placement.start), int(gi_info.placement.size))
            return out
        except nvml.NVMLError as exc:
            if int(exc.value) == NVML_ERROR_NO_PERMISSION:
                return {}
            raise

    # -- sampling -----------------------------------------------------------------------------

    async def sample(self, gpu: Gpu) -> GpuSample:
        handles = self._handles.get(gpu.index)
        if handles is None or handles.gpu != gpu:
            raise TopologyChangedError(f"GPU {gpu.index} was not found by the last discovery")
        return await self._on_gpu(gpu.index, lambda: self._sample_gpu(handles))

    def _sample_gpu(self, h: _GpuHandles) -> GpuSample:
        """Every field of one GPU and its instances, in its worker thread."""
        nvml = self._nvml
        index = h.gpu.index
        values: dict[Entity, dict[Field, float]] = {}
        unsupported: dict[Field, str] = {}
        gpu_values: dict[Field, float] = {}
        if h.driver_total:
            gpu_values[Field.MEMORY_TOTAL] = float(h.gpu.memory_total_bytes)
        values[Entity(index)] = gpu_values
        with self._errors(index):
            self._verify_devices(h)
            self._probe_empty_slots(h)
            self._read_xids(index, gpu_values, unsupported)
            self._read_field(
                Field.POWER, lambda: nvml.nvmlDeviceGetPowerUsage(h.handle) / 1000.0, gpu_values, unsupported
            )
            self._read_field(
                Field.TEMPERATURE,
                lambda: nvml.nvmlDeviceGetTemperature(h.handle, nvml.NVML_TEMPERATURE_GPU),
                gpu_values,
                unsupported,
            )
            self._read_memory(h, values, gpu_values, unsupported)
            self._read_health(h, gpu_values, unsupported)
            if h.gpm:
                self._read_activity(h, values, unsupported)
            else:
                unsupported.update(dict.fromkeys(GPM_FIELDS, "no_gpm"))
        return GpuSample(gpu=index, values=values, unsupported=unsupported)

    def _read_health(self, h: _GpuHandles, gpu_values: dict[Field, float], unsupported: dict[Field, str]) -> None:
        """Clocks, energy, PCIe replays, remapped rows, utilization and the field values, on the GPU handle."""
        nvml, handle = self._nvml, h.handle
        for fld, name, args, scale in _GPU_READS:
            read = partial(_scaled, getattr(nvml, name), (handle, *args), scale)
            self._read_field(fld, read, gpu_values, unsupported)
        self._read_fields(
            lambda: nvml.nvmlDeviceGetRemappedRows(handle),
            {0: Field.REMAPPED_ROWS_CORRECTABLE, 1: Field.REMAPPED_ROWS_UNCORRECTABLE, 3: Field.ROW_REMAP_FAILURE},
            gpu_values,
            unsupported,
        )
        self._read_field(
            Field.ENCODER_UTIL, lambda: nvml.nvmlDeviceGetEncoderUtilization(handle)[0] / 100, gpu_values, unsupported
        )
        self._read_field(
            Field.DECODER_UTIL, lambda: nvml.nvmlDeviceGetDecoderUtilization(handle)[0] / 100, gpu_values, unsupported
        )
        if not h.gpu.mig_enabled:  # NotSupported on a MIG-enabled GPU
            self._read_fields(
                lambda: _utilization(nvml.nvmlDeviceGetUtilizationRates(handle)),
                {0: Field.GPU_UTIL, 1: Field.MEMORY_COPY_UTIL},
                gpu_values,
                unsupported,
            )
        self._read_field_values(h.gpu.index, handle, gpu_values, unsupported)

    def _read_fields(
        self,
        read: Callable[[], tuple[float, ...]],
        fields: dict[int, Field],
        values: dict[Field, float],
        unsupported: dict[Field, str],
    ) -> None:
        """Store the items of `read()` under `fields` (by position), or the driver's reason for all of them."""
        try:
            got = read()
        except self._nvml.NVMLError as exc:
            if int(exc.value) not in _UNAVAILABLE:
                raise
            unsupported.update(dict.fromkeys(fields.values(), error_reason(int(exc.value))))
            return
        for position, fld in fields.items():
            values[fld] = float(got[position])

    def _read_field_values(
        self, index: int, handle: Any, values: dict[Field, float], unsupported: dict[Field, str]
    ) -> None:
        """Memory temperature and NVLink traffic (all links), through nvmlDeviceGetFieldValues in one call."""
        nvml = self._nvml
        requests = [
            FI_DEV_MEMORY_TEMP,
            (FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_NVLINKS),
            (FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ALL_NVLINKS),
        ]
        try:
            got = nvml.nvmlDeviceGetFieldValues(handle, requests)
        except nvml.NVMLError as exc:
            if int(exc.value) not in _UNAVAILABLE:
                raise
            unsupported.update(
                dict.fromkeys((Field.MEMORY_TEMPERATURE, Field.NVLINK_RATE), error_reason(int(exc.value)))
            )
            return
        read = [_field_value(fv) for fv in got]
        temperature, tx, rx = read
        if isinstance(temperature, float):
            values[Field.MEMORY_TEMPERATURE] = temperature
        else:
            unsupported[Field.MEMORY_TEMPERATURE] = error_reason(temperature)
        if isinstance(tx, float) and isinstance(rx, float):
            self._nvlink_rate(index, (tx + rx) * KIB, values, unsupported)
        else:
            unsupported[Field.NVLINK_RATE] = error_reason(tx if isinstance(tx, int) else int(rx))

    def _nvlink_rate(self, index: int, total: float, values: dict[Field, float], unsupported: dict[Field, str]) -> None:
        """Bytes per second since the previous reading of the NVLink counters (as DCGM turns them into a rate)."""
        now = self._clock()
        previous = self._nvlink.get(index)
        self._nvlink[index] = (now, total)
        if previous is None or now <= previous[0] or total < previous[1]:
            unsupported[Field.NVLINK_RATE] = "warming_up"  # the first reading, or the counters were reset
            return
        values[Field.NVLINK_RATE] = (total - previous[1]) / (now - previous[0])

    def _read_memory(
        self,
        h: _GpuHandles,
        values: dict[Entity, dict[Field, float]],
        gpu_values: dict[Field, float],
        unsupported: dict[Field, str],
    ) -> None:
        """Memory per GPU instance and for the whole GPU; a refused read leaves only that value out.

        With MIG on and the parent's memory refused, the whole GPU's use is the sum of its instances'.
        """
        index = h.gpu.index
        refused: dict[Field, str] = {}
        used, complete = 0.0, True
        for inst, device in self._first_devices(h):
            memory = self._optional(partial(self._memory, device.handle), refused, Field.MEMORY_USED)
            if memory is None:
                complete = False
                continue
            values[Entity(index, inst.gi)] = {
                Field.MEMORY_USED: float(memory.used),
                Field.MEMORY_TOTAL: float(memory.total),
            }
            used += float(memory.used)
        parent = (
            self._optional(partial(self._memory, h.handle), refused, Field.MEMORY_USED) if h.parent_memory else None
        )
        if parent is not None:
            gpu_values[Field.MEMORY_USED] = float(parent.used)
            if hasattr(parent, "reserved"):  # memory info v2
                gpu_values[Field.MEMORY_RESERVED] = float(parent.reserved)
        elif h.gpu.mig_enabled and complete:
            gpu_values[Field.MEMORY_USED] = used
        elif not h.gpu.mig_enabled and not h.parent_memory:
            refused.setdefault(Field.MEMORY_USED, "no_permission")
        present = {f for v in values.values() for f in v}
        for fld in (Field.MEMORY_USED, Field.MEMORY_TOTAL):
            if fld not in present:
                unsupported[fld] = refused.get(Field.MEMORY_USED, "no_permission")
        if Field.MEMORY_RESERVED not in gpu_values:
            unsupported[Field.MEMORY_RESERVED] = (
                "no_memory_v2" if parent is not None else refused.get(Field.MEMORY_USED, "no_permission")
            )

    def _read_field(
        self, fld: Field, read: Callable[[], float], values: dict[Field, float], unsupported: dict[Field, str]
    ) -> None:
        """Store `read()` under `fld`, or the reason the driver gives for not having it."""
        try:
            values[fld] = float(read())
        except self._nvml.NVMLError as exc:
            if int(exc.value) not in _UNAVAILABLE:
                raise
            unsupported[fld] = error_reason(int(exc.value))

    def _read_xids(self, index: int, gpu_values: dict[Field, float], unsupported: dict[Field, str]) -> None:
        """The GPU's XID count so far (every scope), or why its events cannot be had."""
        reason = self._events.reason(index)
        if reason is None:
            gpu_values[Field.XID_ERRORS] = float(self._xids.total(index))
        else:
            unsupported[Field.XID_ERRORS] = reason

    def xid_errors(self) -> XidErrors:
        """XID errors counted from NVML's events since the source opened."""
        return self._xids.snapshot()

    def _verify_devices(self, h: _GpuHandles) -> None:
        """Raise TopologyChangedError when a MIG handle's slot now holds another instance (or none)."""
        for device in h.devices:
            try:
                uuid = _text(self._nvml.nvmlDeviceGetUUID(device.handle))
            except self._nvml.NVMLError as exc:
                # An emptied slot: NotFound, or InvalidArgument for a handle the driver no longer knows.
                if int(exc.value) in (NVML_ERROR_NOT_FOUND, NVML_ERROR_INVALID_ARGUMENT):
                    raise TopologyChangedError(f"GPU {h.gpu.index}: GI {device.gi} CI {device.ci} is gone") from None
                raise
            if uuid != device.uuid:
                raise TopologyChangedError(f"GPU {h.gpu.index}: GI {device.gi} CI {device.ci} was re-partitioned")

    def _probe_empty_slots(self, h: _GpuHandles) -> None:
        """Raise TopologyChangedError when a MIG device slot that was empty at discovery now holds one."""
        for slot in h.empty_slots:
            try:
                self._nvml.nvmlDeviceGetMigDeviceHandleByIndex(h.handle, slot)
            except self._nvml.NVMLError as exc:
                if int(exc.value) == NVML_ERROR_NOT_FOUND:
                    continue
                raise
            raise TopologyChangedError(f"GPU {h.gpu.index}: a MIG device appeared in slot {slot}")

    @staticmethod
    def _first_devices(h: _GpuHandles) -> Iterator[tuple[GpuInstance, _MigDevice]]:
        """Each GPU instance with one of its MIG devices (memory is per GPU instance)."""
        for inst in h.gpu.instances:
            for device in h.devices:
                if device.gi == inst.gi:
                    yield inst, device
                    break

    def _read_activity(
        self, h: _GpuHandles, values: dict[Entity, dict[Field, float]], unsupported: dict[Field, str]
    ) -> None:
        """GPM ratios for the whole GPU (MIG off) or each GPU and compute instance (MIG on)."""
        nvml = self._nvml
        index = h.gpu.index
        pool = self._gpm.setdefault(index, {})
        reads: list[_GpmRead] = []
        if not h.gpu.mig_enabled:
            reads.append(_GpmRead(Entity(index), h.gpu.uuid, partial(nvml.nvmlGpmSampleGet, h.handle)))
        devices = {(d.gi, d.ci): d for d in h.devices}
        for inst in h.gpu.instances:
            identity = (inst.profile_id, inst.placement_start, tuple(c.mig_uuid for c in inst.compute_instances))
            take = partial(nvml.nvmlGpmMigSampleGet, h.handle, inst.gi)
            reads.append(_GpmRead(Entity(index, inst.gi), identity, take))
            for ci in inst.compute_instances:
                mig = devices[(inst.gi, ci.ci)].handle
                reads.append(_GpmRead(Entity(index, inst.gi, ci.ci), ci.mig_uuid, partial(nvml.nvmlGpmSampleGet, mig)))
        if not reads:
            return  # MIG on, no instances: nothing to measure
        failures: dict[Field, str] = {}
        for read in reads:
            ratios = self._gpm_ratios(index, pool, read, failures)
            if read.entity.ci is not None:  # I/O is reported per GPU instance; a compute instance keeps its ratios
                ratios = {f: v for f, v in ratios.items() if f in ACTIVITY_FIELDS}
            values.setdefault(read.entity, {}).update(ratios)
        present = {f for v in values.values() for f in v}
        for fld in GPM_FIELDS:
            if fld not in present:
                unsupported[fld] = failures.get(fld, "warming_up")
        self._free_unused(pool, {read.entity for read in reads})

    def _gpm_ratios(
        self, index: int, pool: dict[Entity, _GpmBuffers], read: _GpmRead, failures: dict[Field, str]
    ) -> dict[Field, float]:
        """Take a GPM reading for one entity and return the ratios since its previous reading."""
        nvml = self._nvml
        buffers = pool.get(read.entity)
        if buffers is None:
            buffers = pool[read.entity] = _GpmBuffers(
                [nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()], read.identity
            )
        if buffers.identity != read.identity:
            buffers.identity, buffers.taken_at, buffers.last = read.identity, None, {}
        now = self._clock()
        if buffers.taken_at is not None and now - buffers.taken_at < GPM_MIN_INTERVAL:
            return dict(buffers.last)  # too soon for a new reading: NVML needs 100 ms between samples
        previous, current = buffers.samples
        try:
            read.take(current)
        except nvml.NVMLError as exc:
            if int(exc.value) not in _UNAVAILABLE:
                raise
            failures.update(dict.fromkeys(GPM_FIELDS, error_reason(int(exc.value))))
            return {}  # this entity has no GPM reading (e.g. no per-GPU-instance GPM on this driver)
        had_previous = buffers.taken_at is not None
        buffers.samples = [current, previous]
        buffers.taken_at = now
        if not had_previous:
            return {}
        metrics = self._metrics_get.get(index)
        if metrics is None:
            metrics = self._metrics_get[index] = nvml.c_nvmlGpmMetricsGet_t()
            metrics.numMetrics = len(GPM_METRICS)
            for i, (_, metric_id) in enumerate(GPM_METRICS):
                metrics.metrics[i].metricId = metric_id
        metrics.version = nvml.NVML_GPM_METRICS_GET_VERSION  # nvmlGpmMetricsGet does not set it
        metrics.sample1 = previous
        metrics.sample2 = current
        nvml.nvmlGpmMetricsGet(metrics)
        ratios: dict[Field, float] = {}
        for i, (fld, _) in enumerate(GPM_METRICS):
            metric = metrics.metrics[i]
            code = int(metric.nvmlReturn)
            value = float(metric.value)
            if code != NVML_SUCCESS:
                failures[fld] = error_reason(code)
            elif math.isfinite(value):
                ratios[fld] = _gpm_value(fld, value)
        buffers.last = ratios
        return ratios

    def _free_unused(self, pool: dict[Entity, _GpmBuffers], keep: set[Entity]) -> None:
        """Free the GPM buffers of instances that no longer exist."""
        for entity in [e for e in pool if e not in keep]:
            for s in pool.pop(entity).samples:
                self._nvml.nvmlGpmSampleFree(s)

    # -- doctor -------------------------------------------------------------------------------

    async def describe(self) -> list[Finding]:
        """The driver and NVML versions, and per GPU discovered: MIG mode, GPM, the GPU-instance APIs, memory."""
        versions = await in_driver_thread(self._versions)
        found = [Finding("NVML", "library", Level.OK, versions)]
        for index, h in sorted(self._handles.items()):
            found.extend(self._describe_gpu(index, h))
        for index, why in sorted(self._left_out.items()):
            message = f"NVML counts it but cannot read it, so serve leaves it out: {why}"
            fix = "look for Xid errors in `dmesg` and check `nvidia-smi -i <index>`; a lost GPU needs a reset"
            found.append(Finding("NVML", f"GPU {index}", Level.FAIL, message, fix))
        return found

    def _versions(self) -> str:
        nvml = self._nvml
        parts = []
        for label, call in (("NVML", "nvmlSystemGetNVMLVersion"), ("driver", "nvmlSystemGetDriverVersion")):
            try:
                parts.append(f"{label} {_text(getattr(nvml, call)())}")
            except (nvml.NVMLError, AttributeError) as exc:
                parts.append(f"{label} unknown ({exc})")
        try:
            cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
            parts.append(f"CUDA {cuda // 1000}.{cuda % 1000 // 10}")
        except (nvml.NVMLError, AttributeError):
            pass  # informative only
        return ", ".join(parts)

    @staticmethod
    def _describe_gpu(index: int, h: _GpuHandles) -> list[Finding]:
        """One line of what works on the GPU, and one per thing that does not (with the fix)."""
        gpu, subject = h.gpu, f"GPU {index}"
        facts = [f"{gpu.model} ({gpu.uuid})", f"MIG {gpu.mig_mode}"]
        if gpu.mig_enabled:
            facts.append(_count(len(gpu.instances), "GPU instance"))
        problems = []
        if h.gpm:
            facts.append("GPM")
        else:
            problems.append(
                Finding(
                    "NVML",
                    subject,
                    Level.WARN,
                    "no GPM (older than Hopper): NVML cannot read activity on this GPU",
                    "use --source dcgm for activity on this board",
                )
            )
        if gpu.instances and all(i.placement_start is None for i in gpu.instances):
            message = (
                "GPU-instance APIs refused (no_permission): profile names derived from the MIG devices, "
                "placement_start empty"
            )
            problems.append(Finding("NVML", subject, Level.WARN, message, PRIVILEGE_FIX))
        elif gpu.instances:
            facts.append("GPU-instance APIs permitted")
        if not h.driver_total:
            message = (
                "the driver refuses the whole GPU's memory (no_permission): mig_gpu_memory_total_bytes absent, "
                "memory used is the instances' sum"
            )
            problems.append(Finding("NVML", subject, Level.WARN, message, PRIVILEGE_FIX))
        return [Finding("NVML", subject, Level.OK, ", ".join(facts)), *problems]

    # -- shutdown -----------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await in_driver_thread(self._close_sync)

    def _close_sync(self) -> None:
        nvml = self._nvml
        self._events.close()  # before nvmlShutdown: the event thread still waits on the set
        for index, pool in self._gpm.items():
            if index in self._busy:
                continue  # a hung call may still use these buffers: leave them to process exit
            for buffers in pool.values():
                for s in buffers.samples:
                    try:
                        nvml.nvmlGpmSampleFree(s)
                    except nvml.NVMLError as exc:
                        log.debug("freeing a GPM sample of GPU %d failed: %s", index, exc)
        self._gpm.clear()
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as exc:
            log.debug("nvmlShutdown failed: %s", exc)


def _gpm_value(fld: Field, value: float) -> float:
    """A GPM metric in base units: MiB/s to bytes/s, percentages to ratios 0..1."""
    if fld in GPM_BYTE_RATES:
        return max(value, 0.0) * MIB
    return min(max(value / 100.0, 0.0), 1.0)


def _scaled(call: Callable[..., float], args: tuple[Any, ...], scale: float) -> float:
    return float(call(*args)) * scale


def _utilization(rates: Any) -> tuple[float, float]:
    """nvmlUtilization_t's gpu and memory percentages as ratios."""
    return int(rates.gpu) / 100, int(rates.memory) / 100


def _field_value(fv: Any) -> float | int:
    """One nvmlFieldValue_t: its value as a float, or its own nvmlReturn (an int) when it has none."""
    code = int(fv.nvmlReturn)
    if code != NVML_SUCCESS:
        return code
    member = _VALUE_MEMBERS[int(fv.valueType)] if 0 <= int(fv.valueType) < len(_VALUE_MEMBERS) else None
    if member is None:
        return NVML_ERROR_NOT_SUPPORTED
    return float(getattr(fv.value, member))


def _text(value: str | bytes) -> str:
    """NVML strings: str from nvidia-ml-py's wrappers, bytes from plain ctypes structs."""
    return value.decode() if isinstance(value, bytes) else value


def _derive_profile(attributes: Any, memory: int, board: Board | None, gpu_total: int | None) -> tuple[str, int, int]:
    """Profile name, ID and memory slices of a GPU instance from its MIG device's attributes.

    The unprivileged fallback: matches the board's catalog by compute slices and memory, telling
    the `+me` profile by its optical-flow engine. On a board the catalog lacks, the name is built
    from the slice count and memory rounded up to whole GB, the ID is unknown (-1), and the memory
    slices come from the GPU's memory when readable, else from the usual share of a profile with
    that many compute slices.
    """
    compute = int(attributes.gpuInstanceSliceCount)
    gib = memory / GIB
    media = int(attributes.sharedOfaCount) > 0 and compute < COMPUTE_SLICES
    candidates = [p for p in board.profiles if p.compute_slices == compute] if board else []
    if candidates:
        closest = min(abs(p.memory_gib - gib) for p in candidates)
        same = [p for p in candidates if abs(p.memory_gib - gib) == closest]
        chosen = next((p for p in same if p.is_media_extension == media), same[0])
        return chosen.name, chosen.id, chosen.memory_slices
    if gpu_total:
        slices = max(1, round(memory * MEMORY_SLICES / gpu_total))
    else:
        slices = _MEMORY_SLICES_BY_COMPUTE.get(compute, compute)
    return f"{compute}g.{math.ceil(gib)}gb{'+me' if media else ''}", -1, slices


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def _ci_profile_name(ci_slices: int, gi_slices: int, gi_profile: str) -> str:
    """`1c.3g.40gb` for a compute instance within a GPU instance; the GI's name when it spans it."""
    return gi_profile if ci_slices == gi_slices else f"{ci_slices}c.{gi_profile}"
