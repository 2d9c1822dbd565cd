"""A stand-in for nvidia-ml-py's `pynvml`, backed by the synthetic simulator.

It reproduces, for every function the NVML source calls, the real name, parameters and
defaults, return types and quirks (str from the string getters, a `c_uint` from
nvmlDeviceIsMigDeviceHandle, NotFound for empty MIG slots, NotSupported for utilization,
power and temperature on MIG handles, NoPermission for GPU-instance APIs and parent memory
when unprivileged, ArgumentVersionMismatch for a bare `version=2`, per-metric `nvmlReturn`
in GPM results) and raises NVMLError subclasses with the real names, codes and factory
behaviour (`NVMLError(15)` is an `NVMLError_GpuIsLost`). Handles are ctypes pointers, as in
the real library: two handles to one GPU compare unequal, and a MIG handle names a slot, so
after a re-partition it reads whatever instance the slot holds then.

Tests load this file as a module (or put its folder first on PYTHONPATH) and drive it with
`install()` and the fault controls below. A child process picks a built-in or file scenario
with the FAKE_PYNVML_SCENARIO environment variable; without one, nvmlInit fails as on a
machine without the NVIDIA driver.
"""

from __future__ import annotations

import os
import string
import threading
import time
from collections import Counter
from collections.abc import Callable
from ctypes import (
    POINTER,
    Structure,
    Union,
    addressof,
    c_char,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_longlong,
    c_uint,
    c_uint32,
    c_ulong,
    c_ulonglong,
    c_ushort,
    c_void_p,
    cast,
    create_string_buffer,
)
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# -- constants (values as in nvidia-ml-py 13.615.71) ---------------------------------------------

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_FREQ_NOT_SUPPORTED = 24
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_DEPRECATED = 26
NVML_ERROR_NOT_READY = 27
NVML_ERROR_GPU_NOT_FOUND = 28
NVML_ERROR_INVALID_STATE = 29
NVML_ERROR_RESET_TYPE_NOT_SUPPORTED = 30
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_DISABLE = 0x0
NVML_DEVICE_MIG_ENABLE = 0x1

NVML_GPU_INSTANCE_PROFILE_1_SLICE = 0x0
NVML_GPU_INSTANCE_PROFILE_2_SLICE = 0x1
NVML_GPU_INSTANCE_PROFILE_3_SLICE = 0x2
NVML_GPU_INSTANCE_PROFILE_4_SLICE = 0x3
NVML_GPU_INSTANCE_PROFILE_7_SLICE = 0x4
NVML_GPU_INSTANCE_PROFILE_8_SLICE = 0x5
NVML_GPU_INSTANCE_PROFILE_6_SLICE = 0x6
NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1 = 0x7
NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1 = 0x8
NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2 = 0x9
NVML_GPU_INSTANCE_PROFILE_COUNT = 0x12

NVML_DEVICE_NAME_V2_BUFFER_SIZE = 96
NVML_GPM_METRIC_GRAPHICS_UTIL = 1
NVML_GPM_METRIC_SM_UTIL = 2
NVML_GPM_METRIC_SM_OCCUPANCY = 3
NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
NVML_GPM_METRIC_DRAM_BW_UTIL = 10
NVML_GPM_METRIC_PCIE_TX_PER_SEC = 20
NVML_GPM_METRIC_PCIE_RX_PER_SEC = 21
NVML_GPM_METRIC_MAX = 477

NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3

NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_VALUE_TYPE_UNSIGNED_LONG = 2
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3
NVML_VALUE_TYPE_SIGNED_LONG_LONG = 4

NVML_FI_DEV_MEMORY_TEMP = 82
NVML_FI_DEV_PCIE_REPLAY_COUNTER = 94
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = 138
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 139
NVML_FI_DEV_REMAPPED_COR = 142
NVML_FI_DEV_REMAPPED_UNC = 143
NVML_FI_DEV_REMAPPED_FAILURE = 145
NVML_FI_DEV_ENERGY = 191

NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE = 32
NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE = 16
NVML_GPM_METRICS_GET_VERSION = 1
NVML_GPM_SUPPORT_VERSION = 1

nvmlMemory_v2 = 0x02000028

nvmlEventTypeSingleBitEccError = 0x0000000000000001
nvmlEventTypeDoubleBitEccError = 0x0000000000000002
nvmlEventTypePState = 0x0000000000000004
nvmlEventTypeXidCriticalError = 0x0000000000000008
nvmlEventTypeClock = 0x0000000000000010
nvmlEventMigConfigChange = 0x0000000000000100
nvmlEventTypeNone = 0x0000000000000000
_NO_INSTANCE_ID = 0xFFFFFFFF  # gpuInstanceId / computeInstanceId of an event not raised by a MIG instance
nvmlGpuInstanceProfileInfo_v2 = 0x02000098

# -- errors: the real class hierarchy and factory --------------------------------------------------


class NVMLError(Exception):
    """Base of every NVML error; `NVMLError(code)` returns the subclass for that code."""

    _valClassMapping: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _ERROR_STRINGS.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return self.value == getattr(other, "value", None)

    __hash__ = None  # type: ignore[assignment]  # the real class defines __eq__ only, so it is unhashable


_ERROR_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH: "Argument version mismatch",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


def _extract_error_classes() -> None:
    """NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost, as nvidia-ml-py generates them."""
    namespace = globals()
    for name in [n for n in namespace if n.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(name.replace("NVML_ERROR_", ""), "_").replace("_", "")
        code = namespace[name]

        def new(cls: type[NVMLError], *args: object, _code: int = code) -> NVMLError:
            return NVMLError.__new__(cls, _code)

        error_class = type(class_name, (NVMLError,), {"__new__": new})
        error_class.__module__ = __name__
        namespace[class_name] = error_class
        NVMLError._valClassMapping[code] = error_class


_extract_error_classes()

# -- structs (same fields as nvidia-ml-py) ----------------------------------------------------------


class _PrintableStructure(Structure):
    """Decodes char-array fields to str on read and encodes str on write, like nvidia-ml-py's."""

    def __getattribute__(self, name: str) -> Any:
        res = super().__getattribute__(name)
        return res.decode() if isinstance(res, bytes) else res

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value.encode() if isinstance(value, str) else value)


class struct_c_nvmlDevice_t(Structure):
    pass


c_nvmlDevice_t = POINTER(struct_c_nvmlDevice_t)


class struct_c_nvmlGpuInstance_t(Structure):
    pass


c_nvmlGpuInstance_t = POINTER(struct_c_nvmlGpuInstance_t)


class struct_c_nvmlGpmSample_t(Structure):
    pass


c_nvmlGpmSample_t = POINTER(struct_c_nvmlGpmSample_t)


class struct_c_nvmlEventSet_t(Structure):
    pass  # opaque handle


c_nvmlEventSet_t = POINTER(struct_c_nvmlEventSet_t)


class c_nvmlEventData_t(_PrintableStructure):
    _fields_ = [
        ("device", c_nvmlDevice_t),
        ("eventType", c_ulonglong),
        ("eventData", c_ulonglong),
        ("gpuInstanceId", c_uint),
        ("computeInstanceId", c_uint),
    ]


class c_nvmlMemory_t(_PrintableStructure):
    _fields_ = [("total", c_ulonglong), ("free", c_ulonglong), ("used", c_ulonglong)]


class c_nvmlMemory_v2_t(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("total", c_ulonglong),
        ("reserved", c_ulonglong),
        ("free", c_ulonglong),
        ("used", c_ulonglong),
    ]


class c_nvmlUtilization_t(_PrintableStructure):
    _fields_ = [("gpu", c_uint), ("memory", c_uint)]


class nvmlPciInfo_t(_PrintableStructure):
    _fields_ = [
        ("busIdLegacy", c_char * NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE),
        ("domain", c_uint),
        ("bus", c_uint),
        ("device", c_uint),
        ("pciDeviceId", c_uint),
        ("pciSubSystemId", c_uint),
        ("busId", c_char * NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE),
    ]


class c_nvmlValue_t(Union):
    _fields_ = [
        ("dVal", c_double),
        ("uiVal", c_uint),
        ("ulVal", c_ulong),
        ("ullVal", c_ulonglong),
        ("sllVal", c_longlong),
        ("siVal", c_int),
        ("usVal", c_ushort),
    ]


class c_nvmlFieldValue_t(_PrintableStructure):
    _fields_ = [
        ("fieldId", c_uint32),
        ("scopeId", c_uint32),
        ("timestamp", c_int64),
        ("latencyUsec", c_int64),
        ("valueType", c_uint),
        ("nvmlReturn", c_uint),
        ("value", c_nvmlValue_t),
    ]


class c_nvmlGpuInstancePlacement_t(Structure):
    _fields_ = [("start", c_uint), ("size", c_uint)]


class c_nvmlGpuInstanceProfileInfo_v2_t(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("id", c_uint),
        ("isP2pSupported", c_uint),
        ("sliceCount", c_uint),
        ("instanceCount", c_uint),
        ("multiprocessorCount", c_uint),
        ("copyEngineCount", c_uint),
        ("decoderCount", c_uint),
        ("encoderCount", c_uint),
        ("jpegCount", c_uint),
        ("ofaCount", c_uint),
        ("memorySizeMB", c_ulonglong),
        ("name", c_char * NVML_DEVICE_NAME_V2_BUFFER_SIZE),
    ]

    def __init__(self) -> None:
        super().__init__(version=nvmlGpuInstanceProfileInfo_v2)


class c_nvmlGpuInstanceInfo_t(Structure):
    _fields_ = [
        ("device", c_nvmlDevice_t),
        ("id", c_uint),
        ("profileId", c_uint),
        ("placement", c_nvmlGpuInstancePlacement_t),
    ]


class c_nvmlDeviceAttributes(Structure):
    _fields_ = [
        ("multiprocessorCount", c_uint),
        ("sharedCopyEngineCount", c_uint),
        ("sharedDecoderCount", c_uint),
        ("sharedEncoderCount", c_uint),
        ("sharedJpegCount", c_uint),
        ("sharedOfaCount", c_uint),
        ("gpuInstanceSliceCount", c_uint),
        ("computeInstanceSliceCount", c_uint),
        ("memorySizeMB", c_ulonglong),
    ]


class c_metricInfo_t(Structure):
    _fields_ = [("shortName", c_char_p), ("longName", c_char_p), ("unit", c_char_p)]


class c_nvmlGpmMetric_t(_PrintableStructure):
    _fields_ = [
        ("metricId", c_uint),
        ("nvmlReturn", c_uint),
        ("value", c_double),
        ("metricInfo", c_metricInfo_t),
    ]


class c_nvmlGpmMetricsGet_t(_PrintableStructure):
    _fields_ = [
        ("version", c_uint),
        ("numMetrics", c_uint),
        ("sample1", c_nvmlGpmSample_t),
        ("sample2", c_nvmlGpmSample_t),
        ("metrics", c_nvmlGpmMetric_t * NVML_GPM_METRIC_MAX),
    ]


class c_nvmlGpmSupport_t(_PrintableStructure):
    _fields_ = [("version", c_uint), ("isSupportedDevice", c_uint)]


# -- the simulated driver ---------------------------------------------------------------------------

MIB = 1024**2
PARENT_RESERVED_BYTES = 512 * MIB  # memory the driver keeps for itself on a whole GPU
MAX_MIG_DEVICES = 7
HANG_LIMIT_SECONDS = 120.0  # a hung call returns (with Timeout) after this, so a test run cannot wedge

# GPU-instance profile enum index -> profile ID on A100/H100-class boards; other indexes are NotSupported.
_PROFILE_ENUM_TO_ID = {0: 19, 1: 14, 2: 9, 3: 5, 4: 0, 7: 20, 9: 15}

# GPM metric ID -> the simulator field name it reads.
_GPM_FIELDS = {
    NVML_GPM_METRIC_GRAPHICS_UTIL: "GR_ENGINE_ACTIVE",
    NVML_GPM_METRIC_SM_UTIL: "SM_ACTIVE",
    NVML_GPM_METRIC_SM_OCCUPANCY: "SM_OCCUPANCY",
    NVML_GPM_METRIC_ANY_TENSOR_UTIL: "TENSOR_ACTIVE",
    NVML_GPM_METRIC_DRAM_BW_UTIL: "DRAM_ACTIVE",
}
# GPM metric ID -> the simulator's PCIe field (MiB/s in GPM).
_GPM_PCIE = {NVML_GPM_METRIC_PCIE_TX_PER_SEC: "PCIE_TX_RATE", NVML_GPM_METRIC_PCIE_RX_PER_SEC: "PCIE_RX_RATE"}
ALL_NVLINKS = 0xFFFFFFFF


@dataclass
class _Sample:
    """What a GPM sample buffer holds: which entity it read, and when."""

    entity: tuple[int, int | None, int | None] | None = None
    taken_at: float | None = None


@dataclass
class _EventSet:
    """An event set: the event types each GPU registered, and the events waiting to be read."""

    registered: dict[int, int] = field(default_factory=dict)  # GPU index -> event type mask
    pending: list[tuple[int, int, int, int]] = field(default_factory=list)  # (gpu, xid, gi id, ci id)


@dataclass
class _Driver:
    """The fake driver's state: the simulator, privileges, faults and call counts."""

    simulator: Any
    clock: Callable[[], float] = time.time
    privileged: bool = True
    models: dict[int, str] = field(default_factory=dict)  # GPU index -> model name override
    no_gpm: set[int] = field(default_factory=set)
    failing: dict[int, int] = field(default_factory=dict)  # GPU index -> error code of every call on it
    hung: dict[int, threading.Event] = field(default_factory=dict)
    metric_errors: dict[int, int] = field(default_factory=dict)  # GPM metric ID -> nvmlReturn to report
    empty_slot_error: int = NVML_ERROR_NOT_FOUND  # what a MIG handle to an emptied slot raises
    memory_v2: bool = True  # False: a driver without nvmlDeviceGetMemoryInfo_v2
    memory_total_mib: dict[int, int] = field(
        default_factory=dict
    )  # GPU index -> the driver's total (not the catalog's)
    refused: dict[str, int] = field(default_factory=dict)  # function name -> error every call to it returns
    calls: Counter[str] = field(default_factory=Counter)
    waiting: Counter[int] = field(default_factory=Counter)  # GPU index -> calls blocked on its hang now
    initialized: int = 0
    handles: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # address -> (kind, gpu, slot or gi)
    buffers: dict[tuple[str, int, int], Any] = field(default_factory=dict)
    samples: dict[int, _Sample] = field(default_factory=dict)  # address -> sample, while allocated
    sample_memory: list[Any] = field(default_factory=list)
    event_types: int = nvmlEventTypeXidCriticalError | nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError
    event_sets: dict[int, _EventSet] = field(default_factory=dict)  # address -> set, while not freed
    event_memory: list[Any] = field(default_factory=list)
    events: threading.Condition = field(default_factory=threading.Condition)
    started: float = field(default_factory=time.monotonic)  # scenario XIDs are timed from here
    scenario_xids_raised: int = 0  # how many of the scenario's XIDs (in `after` order) were raised
    event_wait_hung: threading.Event | None = None  # set: nvmlEventSetWait_v2 blocks until it is set


_driver: _Driver | None = None
_lock = threading.Lock()


def install(simulator: Any, clock: Callable[[], float] = time.time, privileged: bool = True) -> _Driver:
    """Back this module with `simulator` (fresh state); return the driver state for fault control."""
    global _driver
    _driver = _Driver(simulator=simulator, clock=clock, privileged=privileged)
    return _driver


def driver() -> _Driver:
    """The installed driver state; raises when none is installed."""
    if _driver is None:
        raise RuntimeError("fake pynvml: install(simulator) first")
    return _driver


def set_model(gpu: int, model: str, gpm: bool) -> None:
    """Make one GPU report another model name, with or without GPM (e.g. an A100: no GPM)."""
    d = driver()
    d.models[gpu] = model
    (d.no_gpm.discard if gpm else d.no_gpm.add)(gpu)


def fail_gpu(gpu: int, code: int = NVML_ERROR_GPU_IS_LOST) -> None:
    """Every call on this GPU from now on fails with `code` (GpuIsLost by default, as after an Xid 79)."""
    driver().failing[gpu] = code


def hang_gpu(gpu: int) -> threading.Event:
    """Calls on this GPU block until the returned event is set (or HANG_LIMIT_SECONDS pass)."""
    event = threading.Event()
    driver().hung[gpu] = event
    return event


def hang_event_wait() -> threading.Event:
    """nvmlEventSetWait_v2 blocks, whatever its timeout, until the returned event is set (or HANG_LIMIT_SECONDS)."""
    event = threading.Event()
    driver().event_wait_hung = event
    return event


def release_all() -> None:
    """Unblock every hung call and stop hanging."""
    d = driver()
    for event in [*d.hung.values(), *([d.event_wait_hung] if d.event_wait_hung else [])]:
        event.set()
    d.hung.clear()
    d.event_wait_hung = None


def fail_metric(metric_id: int, code: int) -> None:
    """Report `code` in this GPM metric's own nvmlReturn from now on."""
    driver().metric_errors[metric_id] = code


def raise_xid(gpu: int, xid: int, gi: int | None = None, ci: int | None = None) -> None:
    """The driver reports XID `xid` on `gpu`, raised by GPU instance `gi` / compute instance `ci` (None: GPU-wide).

    Every event set on which the GPU is registered for XID events gets it, as NVML delivers them.
    """
    d = driver()
    gi_id = _NO_INSTANCE_ID if gi is None else gi
    ci_id = _NO_INSTANCE_ID if gi is None or ci is None else ci
    with d.events:
        for event_set in d.event_sets.values():
            if event_set.registered.get(gpu, 0) & nvmlEventTypeXidCriticalError:
                event_set.pending.append((gpu, xid, gi_id, ci_id))
        d.events.notify_all()


def _raise_scenario_xids(d: _Driver) -> None:
    """Raise the scenario's XIDs whose time (seconds after install) has come."""
    due = sorted(d.simulator.scenario.xids, key=lambda x: x.after)
    elapsed = time.monotonic() - d.started
    while d.scenario_xids_raised < len(due) and due[d.scenario_xids_raised].after <= elapsed:
        spec = due[d.scenario_xids_raised]
        d.scenario_xids_raised += 1
        raise_xid(spec.gpu, spec.xid, spec.gi, spec.ci)


def _check(code: int) -> None:
    if code != NVML_SUCCESS:
        raise NVMLError(code)


def _address(handle: Any) -> int:
    value = cast(handle, c_void_p).value
    return int(value or 0)


def _handle(kind: str, gpu: int, key: int, pointer_type: Any) -> Any:
    """A fresh pointer object to the fixed address of (kind, gpu, key)."""
    d = driver()
    with _lock:
        buffer = d.buffers.get((kind, gpu, key))
        if buffer is None:
            buffer = d.buffers[(kind, gpu, key)] = create_string_buffer(8)
            d.handles[addressof(buffer)] = (kind, gpu, key)
    return cast(addressof(buffer), pointer_type)


def _resolve(handle: Any) -> tuple[str, int, int]:
    entry = driver().handles.get(_address(handle))
    if entry is None:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return entry


def _gpu_of(args: tuple[Any, ...]) -> int | None:
    """The GPU index a call's first handle argument names, if any."""
    if not args:
        return None
    first = args[0]
    if hasattr(first, "sample1"):  # an nvmlGpmMetricsGet struct (this module's or nvidia-ml-py's)
        sample = driver().samples.get(_address(first.sample1))
        return sample.entity[0] if sample and sample.entity else None
    if isinstance(first, int):
        return None
    entry = driver().handles.get(_address(first))
    return entry[1] if entry else None


def _api(fn: F) -> F:
    """Count the call, refuse it before nvmlInit, and apply failing/hung faults of the GPU it names."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        d = _driver
        if d is None or d.initialized == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        d.calls[fn.__name__] += 1
        if fn.__name__ in d.refused:
            raise NVMLError(d.refused[fn.__name__])
        gpu = _gpu_of(args)
        if fn.__name__ == "nvmlDeviceGetHandleByIndex":
            gpu = args[0]
        if gpu is not None:
            event = d.hung.get(gpu)
            if event is not None:
                d.waiting[gpu] += 1
                try:
                    if not event.wait(HANG_LIMIT_SECONDS):
                        raise NVMLError(NVML_ERROR_TIMEOUT)
                finally:
                    d.waiting[gpu] -= 1
            if gpu in d.failing:
                raise NVMLError(d.failing[gpu])
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _topology_gpu(gpu: int) -> Any:
    return driver().simulator.topology().gpus[gpu]


def _board(gpu: int) -> Any:
    from exporter.mig.catalog import board

    return board(_topology_gpu(gpu).board)


def _slots(gpu: int) -> dict[int, tuple[Any, Any]]:
    """MIG device slot -> (GPU instance, compute instance): the GI's first compute slice plus the CI's offset."""
    slots = {}
    for inst in _topology_gpu(gpu).instances:
        offset = 0
        for ci in inst.compute_instances:
            slots[inst.placement_start + offset] = (inst, ci)
            offset += ci.compute_slices
    return slots


def _mig(handle: Any) -> tuple[int, Any, Any]:
    """(GPU, GI, CI) of a MIG handle; NotFound when its slot is empty now."""
    kind, gpu, slot = _resolve(handle)
    if kind != "mig":
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    found = _slots(gpu).get(slot)
    if found is None:
        raise NVMLError(driver().empty_slot_error)
    return gpu, found[0], found[1]


def _parent(handle: Any) -> int:
    kind, gpu, _ = _resolve(handle)
    if kind != "gpu":
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return gpu


def _profile(gpu: int, profile_id: int) -> Any:
    return _board(gpu).profile_by_id(profile_id)


# -- the API ----------------------------------------------------------------------------------------


def nvmlInit() -> None:
    nvmlInitWithFlags(0)


def nvmlInitWithFlags(flags: int) -> None:
    if _driver is None:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    _driver.initialized += 1


def nvmlShutdown() -> None:
    if _driver is None or _driver.initialized == 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    _driver.initialized -= 1


@_api
def nvmlSystemGetDriverVersion() -> str:
    return str(driver().simulator.scenario.driver_version)


@_api
def nvmlSystemGetNVMLVersion() -> str:
    return f"12.{driver().simulator.scenario.driver_version}"


@_api
def nvmlSystemGetCudaDriverVersion() -> int:
    return 12040


@_api
def nvmlDeviceGetCount() -> int:
    return len(driver().simulator.topology().gpus)


@_api
def nvmlDeviceGetHandleByIndex(index: int) -> Any:
    if not 0 <= index < len(driver().simulator.topology().gpus):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _handle("gpu", index, 0, c_nvmlDevice_t)


@_api
def nvmlDeviceGetName(handle: Any) -> str:
    kind, gpu, _ = _resolve(handle)
    model = driver().models.get(gpu, _topology_gpu(gpu).model)
    if kind == "mig":
        _, inst, _ = _mig(handle)
        return f"{model} MIG {inst.profile}"
    return str(model)


@_api
def nvmlDeviceGetUUID(handle: Any) -> str:
    kind, gpu, _ = _resolve(handle)
    if kind == "mig":
        return str(_mig(handle)[2].mig_uuid)
    return str(_topology_gpu(gpu).uuid)


@_api
def nvmlDeviceGetMigMode(device: Any) -> list[int]:
    g = _topology_gpu(_parent(device))
    return [int(g.mig_enabled), int(g.mig_pending if g.mig_pending is not None else g.mig_enabled)]


@_api
def nvmlDeviceGetMaxMigDeviceCount(device: Any) -> int:
    _parent(device)
    return MAX_MIG_DEVICES


@_api
def nvmlDeviceGetMigDeviceHandleByIndex(device: Any, index: int) -> Any:
    gpu = _parent(device)
    if not _topology_gpu(gpu).mig_enabled or not 0 <= index < MAX_MIG_DEVICES:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if index not in _slots(gpu):
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return _handle("mig", gpu, index, c_nvmlDevice_t)


@_api
def nvmlDeviceIsMigDeviceHandle(device: Any) -> c_uint:
    return c_uint(1 if _resolve(device)[0] == "mig" else 0)


@_api
def nvmlDeviceGetGpuInstanceId(device: Any) -> int:
    return int(_mig(device)[1].gi)


@_api
def nvmlDeviceGetComputeInstanceId(device: Any) -> int:
    return int(_mig(device)[2].ci)


def nvmlDeviceGetAttributes(device: Any) -> c_nvmlDeviceAttributes:
    return nvmlDeviceGetAttributes_v2(device)


@_api
def nvmlDeviceGetAttributes_v2(device: Any) -> c_nvmlDeviceAttributes:
    kind, gpu, _ = _resolve(device)
    if kind != "mig":
        g = _topology_gpu(gpu)
        full = _profile(gpu, 0)
        return c_nvmlDeviceAttributes(
            multiprocessorCount=full.sms,
            gpuInstanceSliceCount=full.compute_slices,
            computeInstanceSliceCount=full.compute_slices,
            memorySizeMB=g.memory_total_bytes // MIB,
        )
    _, inst, ci = _mig(device)
    profile = _profile(gpu, inst.profile_id)
    media = profile.is_media_extension or profile.compute_slices == 7
    return c_nvmlDeviceAttributes(
        multiprocessorCount=profile.sms * ci.compute_slices // profile.compute_slices,
        sharedCopyEngineCount=profile.compute_slices,
        sharedDecoderCount=7 if media else profile.compute_slices,
        sharedEncoderCount=0,
        sharedJpegCount=7 if media else profile.compute_slices,
        sharedOfaCount=1 if media else 0,
        gpuInstanceSliceCount=inst.compute_slices,
        computeInstanceSliceCount=ci.compute_slices,
        memorySizeMB=inst.memory_total_bytes // MIB,
    )


@_api
def nvmlDeviceGetMemoryInfo(handle: Any, version: Any = None) -> Any:
    d = driver()
    kind, gpu, _ = _resolve(handle)
    t = d.clock()
    if kind == "mig":
        _, inst, _ = _mig(handle)
        total, reserved = inst.memory_total_bytes, 0
        used = int(d.simulator.gi_memory_used(gpu, inst.gi, t))
    else:
        g = _topology_gpu(gpu)
        if g.mig_enabled and not d.privileged:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        total, reserved = d.memory_total_mib.get(gpu, g.memory_total_bytes // MIB) * MIB, PARENT_RESERVED_BYTES
        used = int(d.simulator.gpu_memory_used(gpu, t))
    free = max(total - reserved - used, 0)
    if not version:
        return c_nvmlMemory_t(total=total, free=free, used=used + reserved)
    if not d.memory_v2:
        raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
    if version != nvmlMemory_v2:
        raise NVMLError(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
    return c_nvmlMemory_v2_t(version=version, total=total, reserved=reserved, free=free, used=used)


def _gpu_sample(gpu: int) -> Any:
    return driver().simulator.sample(gpu, driver().clock())


@_api
def nvmlDeviceGetPowerUsage(handle: Any) -> int:
    kind, gpu, _ = _resolve(handle)
    if kind == "mig":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    from exporter.model import Entity, Field

    return int(_gpu_sample(gpu).get(Entity(gpu), Field.POWER) * 1000)


@_api
def nvmlDeviceGetTemperature(handle: Any, sensor: int) -> int:
    kind, gpu, _ = _resolve(handle)
    if kind == "mig":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if sensor != NVML_TEMPERATURE_GPU:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    from exporter.model import Entity, Field

    return int(_gpu_sample(gpu).get(Entity(gpu), Field.TEMPERATURE))


@_api
def nvmlDeviceGetUtilizationRates(handle: Any) -> c_nvmlUtilization_t:
    kind, gpu, _ = _resolve(handle)
    if kind == "mig" or _topology_gpu(gpu).mig_enabled:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    from exporter.model import Field

    whole = _gpu_values(gpu)
    return c_nvmlUtilization_t(
        gpu=round(whole[Field.GPU_UTIL] * 100), memory=round(whole[Field.MEMORY_COPY_UTIL] * 100)
    )


def _gpu_values(gpu: int) -> Any:
    """The simulator's GPU-wide values now."""
    from exporter.model import Entity

    return _gpu_sample(gpu).values[Entity(gpu)]


def _whole_gpu(handle: Any) -> int:
    """The GPU of a parent handle; NotSupported on a MIG device handle (GPU-wide readings)."""
    kind, gpu, _ = _resolve(handle)
    if kind == "mig":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return gpu


@_api
def nvmlDeviceGetPciInfo_v3(handle: Any) -> nvmlPciInfo_t:
    gpu = _whole_gpu(handle)
    bus_id = _topology_gpu(gpu).pci_bus_id
    domain, bus, rest = bus_id.split(":")
    info = nvmlPciInfo_t()
    info.busIdLegacy = bus_id[-12:]
    info.busId = bus_id
    info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
    info.pciDeviceId = 0x233010DE  # H100 SXM5 80GB
    return info


def nvmlDeviceGetPciInfo(handle: Any) -> nvmlPciInfo_t:
    return nvmlDeviceGetPciInfo_v3(handle)


@_api
def nvmlDeviceGetClockInfo(handle: Any, type: int) -> int:
    gpu = _whole_gpu(handle)
    from exporter.model import Field

    clocks = {NVML_CLOCK_SM: Field.SM_CLOCK, NVML_CLOCK_MEM: Field.MEMORY_CLOCK}
    if type not in clocks:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED if 0 <= type <= NVML_CLOCK_VIDEO else NVML_ERROR_INVALID_ARGUMENT)
    return round(_gpu_values(gpu)[clocks[type]] / 1e6)


@_api
def nvmlDeviceGetTotalEnergyConsumption(handle: Any) -> int:
    from exporter.model import Field

    return round(_gpu_values(_whole_gpu(handle))[Field.ENERGY] * 1000)


@_api
def nvmlDeviceGetPcieReplayCounter(handle: Any) -> int:
    from exporter.model import Field

    return int(_gpu_values(_whole_gpu(handle))[Field.PCIE_REPLAYS])


@_api
def nvmlDeviceGetRemappedRows(device: Any) -> tuple[int, int, int, int]:
    gpu = _whole_gpu(device)
    if _topology_gpu(gpu).mig_enabled:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # as nvml.h documents for MIG-enabled GPUs
    from exporter.model import Field

    whole = _gpu_values(gpu)
    return (
        int(whole[Field.REMAPPED_ROWS_CORRECTABLE]),
        int(whole[Field.REMAPPED_ROWS_UNCORRECTABLE]),
        0,
        int(whole[Field.ROW_REMAP_FAILURE]),
    )


def _codec_utilization(handle: Any, name: str) -> list[int]:
    from exporter.model import Field

    whole = _gpu_values(_whole_gpu(handle))
    return [round(whole[Field[name]] * 100), 167000]  # [utilization %, sampling period in microseconds]


@_api
def nvmlDeviceGetEncoderUtilization(handle: Any) -> list[int]:
    return _codec_utilization(handle, "ENCODER_UTIL")


@_api
def nvmlDeviceGetDecoderUtilization(handle: Any) -> list[int]:
    return _codec_utilization(handle, "DECODER_UTIL")


@_api
def nvmlDeviceGetFieldValues(handle: Any, fieldIds: list[Any]) -> Any:
    """Memory temperature (unsigned int) and NVLink data counters in KiB (unsigned long long, all links only)."""
    gpu = _whole_gpu(handle)
    from exporter.model import Field

    values = (c_nvmlFieldValue_t * len(fieldIds))()
    whole = _gpu_values(gpu)
    now = int(driver().clock() * 1e6)
    for i, request in enumerate(fieldIds):
        fv = values[i]
        try:
            fv.fieldId, fv.scopeId = request
        except TypeError:
            fv.fieldId = request
        fv.timestamp, fv.latencyUsec = now, 0
        if fv.fieldId == NVML_FI_DEV_MEMORY_TEMP:
            fv.valueType, fv.nvmlReturn = NVML_VALUE_TYPE_UNSIGNED_INT, NVML_SUCCESS
            fv.value.uiVal = int(whole[Field.MEMORY_TEMPERATURE])
        elif fv.fieldId in (NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX):
            if fv.scopeId != ALL_NVLINKS:
                fv.nvmlReturn = NVML_ERROR_NOT_SUPPORTED  # the fake models the all-links total only
                continue
            kib = driver().simulator.nvlink_kib(gpu, driver().clock())
            share = kib // 3 if fv.fieldId == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX else kib - kib // 3
            fv.valueType, fv.nvmlReturn = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, NVML_SUCCESS
            fv.value.ullVal = share
        else:
            fv.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
    return values


def _gi_api(device: Any) -> int:
    gpu = _parent(device)
    if not driver().privileged:
        raise NVMLError(NVML_ERROR_NO_PERMISSION)
    return gpu


@_api
def nvmlDeviceGetGpuInstanceProfileInfo(device: Any, profile: int, version: int = 2) -> Any:
    gpu = _gi_api(device)
    if version not in (1, 2):
        raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
    if version == 1:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # the fake only models the v2 struct
    if not 0 <= profile < NVML_GPU_INSTANCE_PROFILE_COUNT:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if profile not in _PROFILE_ENUM_TO_ID or not _topology_gpu(gpu).mig_enabled:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    p = _profile(gpu, _PROFILE_ENUM_TO_ID[profile])
    info = c_nvmlGpuInstanceProfileInfo_v2_t()
    info.id = p.id
    info.sliceCount = p.compute_slices
    info.instanceCount = p.max_count
    info.multiprocessorCount = p.sms
    info.copyEngineCount = p.compute_slices
    info.ofaCount = 1 if p.is_media_extension or p.compute_slices == 7 else 0
    info.memorySizeMB = p.memory_bytes // MIB
    info.name = f"MIG {p.name}"
    return info


@_api
def nvmlDeviceGetGpuInstanceById(device: Any, gpuInstanceId: int) -> Any:
    gpu = _gi_api(device)
    if _topology_gpu(gpu).instance(gpuInstanceId) is None:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return _handle("gi", gpu, gpuInstanceId, c_nvmlGpuInstance_t)


@_api
def nvmlGpuInstanceGetInfo(gpuInstance: Any) -> c_nvmlGpuInstanceInfo_t:
    kind, gpu, gi = _resolve(gpuInstance)
    if kind != "gi":
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if not driver().privileged:
        raise NVMLError(NVML_ERROR_NO_PERMISSION)
    inst = _topology_gpu(gpu).instance(gi)
    if inst is None:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)  # a stale GPU-instance handle
    return c_nvmlGpuInstanceInfo_t(
        device=_handle("gpu", gpu, 0, c_nvmlDevice_t),
        id=inst.gi,
        profileId=inst.profile_id,
        placement=c_nvmlGpuInstancePlacement_t(inst.placement_start, inst.placement_size),
    )


# -- events -----------------------------------------------------------------------------------------


@_api
def nvmlDeviceGetIndex(handle: Any) -> int:
    kind, gpu, _ = _resolve(handle)
    if kind != "gpu":
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return gpu


@_api
def nvmlEventSetCreate() -> Any:
    d = driver()
    with d.events:
        memory = create_string_buffer(8)
        d.event_memory.append(memory)
        d.event_sets[addressof(memory)] = _EventSet()
    return cast(addressof(memory), c_nvmlEventSet_t)


def _event_set(eventSet: Any) -> _EventSet:
    found = driver().event_sets.get(_address(eventSet))
    if found is None:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)  # never created, or freed
    return found


@_api
def nvmlDeviceGetSupportedEventTypes(handle: Any) -> int:
    _parent(handle)
    return driver().event_types


@_api
def nvmlDeviceRegisterEvents(handle: Any, eventTypes: int, eventSet: Any) -> None:
    gpu = _parent(handle)
    d = driver()
    if eventTypes & ~d.event_types:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # NVML refuses a mask with an unsupported type
    with d.events:
        event_set = _event_set(eventSet)
        event_set.registered[gpu] = event_set.registered.get(gpu, 0) | eventTypes


@_api
def nvmlEventSetWait_v2(eventSet: Any, timeoutms: int) -> c_nvmlEventData_t:
    d = driver()
    hung = d.event_wait_hung
    if hung is not None and not hung.wait(HANG_LIMIT_SECONDS):  # a wait stuck in the driver, past its timeout
        raise NVMLError(NVML_ERROR_TIMEOUT)
    deadline = time.monotonic() + timeoutms / 1000
    with d.events:
        while True:
            _raise_scenario_xids(d)
            event_set = _event_set(eventSet)
            if event_set.pending:
                gpu, xid, gi, ci = event_set.pending.pop(0)
                return c_nvmlEventData_t(
                    device=_handle("gpu", gpu, 0, c_nvmlDevice_t),
                    eventType=nvmlEventTypeXidCriticalError,
                    eventData=xid,
                    gpuInstanceId=gi,
                    computeInstanceId=ci,
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise NVMLError(NVML_ERROR_TIMEOUT)
            d.events.wait(min(left, 0.05))  # wake for scenario XIDs coming due


def nvmlEventSetWait(eventSet: Any, timeoutms: int) -> c_nvmlEventData_t:
    return nvmlEventSetWait_v2(eventSet, timeoutms)


@_api
def nvmlEventSetFree(eventSet: Any) -> None:
    d = driver()
    with d.events:
        if d.event_sets.pop(_address(eventSet), None) is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        d.events.notify_all()


# -- GPM --------------------------------------------------------------------------------------------


@_api
def nvmlGpmQueryDeviceSupport(device: Any) -> c_nvmlGpmSupport_t:
    gpu = _parent(device)
    support = c_nvmlGpmSupport_t()
    support.version = NVML_GPM_SUPPORT_VERSION
    support.isSupportedDevice = 0 if gpu in driver().no_gpm else 1
    return support


@_api
def nvmlGpmSampleAlloc() -> Any:
    d = driver()
    with _lock:
        memory = create_string_buffer(8)
        d.sample_memory.append(memory)
        d.samples[addressof(memory)] = _Sample()
    return cast(addressof(memory), c_nvmlGpmSample_t)


@_api
def nvmlGpmSampleFree(gpmSample: Any) -> None:
    if driver().samples.pop(_address(gpmSample), None) is None:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)  # not allocated, or freed twice


def _take(gpmSample: Any, entity: tuple[int, int | None, int | None]) -> Any:
    d = driver()
    if entity[0] in d.no_gpm:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    sample = d.samples.get(_address(gpmSample))
    if sample is None:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    sample.entity, sample.taken_at = entity, d.clock()
    return gpmSample


@_api
def nvmlGpmSampleGet(device: Any, gpmSample: Any) -> Any:
    kind, gpu, _ = _resolve(device)
    if kind == "mig":
        _, inst, ci = _mig(device)
        return _take(gpmSample, (gpu, inst.gi, ci.ci))
    if _topology_gpu(gpu).mig_enabled:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # the fake models GPU-level GPM only with MIG off
    return _take(gpmSample, (gpu, None, None))


@_api
def nvmlGpmMigSampleGet(device: Any, gpuInstanceId: int, gpmSample: Any) -> Any:
    gpu = _parent(device)
    if _topology_gpu(gpu).instance(gpuInstanceId) is None:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return _take(gpmSample, (gpu, gpuInstanceId, None))


def _mean_activity(entity: tuple[int, int | None, int | None], start: float, end: float) -> dict[str, float]:
    """Mean activity of an entity over [start, end], by the midpoint rule over 8 steps."""
    sim = driver().simulator
    gpu, gi, ci = entity
    steps = 8
    totals: dict[str, float] = {}
    for k in range(steps):
        t = start + (end - start) * (k + 0.5) / steps
        if gi is None:
            values = sim.gpu_activity(gpu, t)
        elif ci is None:
            values = sim.gi_activity(gpu, gi, t)
        else:
            values = sim.ci_activity(gpu, gi, ci, t)
        for fld, v in values.items():
            totals[fld.name] = totals.get(fld.name, 0.0) + v / steps
    return totals


@_api
def nvmlGpmMetricsGet(metricsGet: Any) -> Any:
    d = driver()
    if metricsGet.version != NVML_GPM_METRICS_GET_VERSION:
        raise NVMLError(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
    if not 0 < metricsGet.numMetrics <= NVML_GPM_METRIC_MAX:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    first = d.samples.get(_address(metricsGet.sample1))
    second = d.samples.get(_address(metricsGet.sample2))
    if first is None or second is None or first.taken_at is None or second.taken_at is None:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if first.entity != second.entity or second.taken_at <= first.taken_at:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    assert first.entity is not None
    gpu, gi, _ = first.entity
    if gi is not None and _topology_gpu(gpu).instance(gi) is None:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    activity = _mean_activity(first.entity, first.taken_at, second.taken_at)
    pcie = _mean_pcie(first.entity, activity)
    for i in range(metricsGet.numMetrics):
        metric = metricsGet.metrics[i]
        known = metric.metricId in _GPM_FIELDS or metric.metricId in _GPM_PCIE
        code = d.metric_errors.get(metric.metricId, NVML_SUCCESS if known else NVML_ERROR_NOT_SUPPORTED)
        metric.nvmlReturn = code
        if code != NVML_SUCCESS:
            metric.value = 0.0
        elif metric.metricId in _GPM_FIELDS:
            metric.value = activity[_GPM_FIELDS[metric.metricId]] * 100.0
        else:
            metric.value = pcie[_GPM_PCIE[metric.metricId]] / MIB
    return metricsGet


def _mean_pcie(entity: tuple[int, int | None, int | None], activity: dict[str, float]) -> dict[str, float]:
    """PCIe bytes/s of an entity over the window, from its mean activity and its share of the GPU's slices."""
    from exporter.mig.catalog import COMPUTE_SLICES
    from exporter.sources.synthetic.simulator import pcie_rates

    gpu, gi, ci = entity
    slices = float(COMPUTE_SLICES)
    if gi is not None:
        inst = _topology_gpu(gpu).instance(gi)
        assert inst is not None
        slices = inst.compute_slices
        if ci is not None:
            slices = next(c.compute_slices for c in inst.compute_instances if c.ci == ci)
    rates = pcie_rates(activity["GR_ENGINE_ACTIVE"], slices / COMPUTE_SLICES)
    return {fld.name: value for fld, value in rates.items()}


def _install_from_environment() -> None:
    """FAKE_PYNVML_SCENARIO=NAME|FILE backs this module with that scenario (for child processes)."""
    scenario = os.environ.get("FAKE_PYNVML_SCENARIO")
    if not scenario:
        return
    from exporter.sources.synthetic.scenario import load
    from exporter.sources.synthetic.simulator import Simulator

    install(Simulator(load(scenario)))


_install_from_environment()
