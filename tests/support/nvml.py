"""The fake `pynvml` (tests/fakes/pynvml.py) in-process, and a simulated C library for the real one."""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

FAKES = Path(__file__).resolve().parent.parent / "fakes"
_serial = itertools.count()


def load_fake_pynvml() -> ModuleType:
    """A new instance of the fake module, under its own name so the real `pynvml` stays importable."""
    name = f"fake_pynvml_{next(_serial)}"
    spec = importlib.util.spec_from_file_location(name, FAKES / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


class SimulatedLibrary:
    """The C entry points of libnvidia-ml, emulated over the fake: lets the real nvidia-ml-py run on the simulator.

    nvidia-ml-py looks every C function up through `_nvmlGetFunctionPointer`; `attach` swaps that
    lookup for this table, so the real wrappers build their real ctypes structs and arguments and
    this class fills them the way the C library does (output pointers, string buffers, versioned
    structs, return codes).
    """

    def __init__(self, fake: ModuleType) -> None:
        self.fake = fake

    def attach(self, real: ModuleType, monkeypatch: Any) -> None:
        """Point the real module at this library for the rest of a test."""
        monkeypatch.setattr(real, "nvmlLib", self)
        monkeypatch.setattr(real, "_nvmlLib_refcount", 0)
        monkeypatch.setattr(real, "_nvmlGetFunctionPointer", self.function)

    def function(self, name: str) -> Callable[..., int]:
        """The emulated C function `name`; the real module raises FunctionNotFound for the others."""
        impl = getattr(self, "c_" + name, None)
        if impl is None:
            raise AssertionError(f"the NVML source called {name}, which the simulated library does not provide")

        def call(*args: Any) -> int:
            try:
                impl(*args)
            except self.fake.NVMLError as exc:
                return int(exc.value)
            return 0

        return call

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _set_pointer(ref: Any, source: Any) -> None:
        ctypes.c_void_p.from_address(ctypes.addressof(ref._obj)).value = ctypes.cast(source, ctypes.c_void_p).value

    @staticmethod
    def _set(ref: Any, value: Any) -> None:
        ref._obj.value = value

    @staticmethod
    def _copy(src: Any, dst: Any) -> None:
        for name, ctype in dst._fields_:
            if name == "version":
                continue
            value = getattr(src, name)
            if isinstance(value, ctypes.Structure):
                SimulatedLibrary._copy(value, getattr(dst, name))
            elif isinstance(value, ctypes._Pointer):
                setattr(dst, name, ctypes.cast(value, ctype))
            else:
                setattr(dst, name, value.encode() if isinstance(value, str) else value)

    @staticmethod
    def _text(buffer: Any, text: str) -> None:
        buffer.value = text.encode()

    # -- the C API the source uses -----------------------------------------------------------------

    def c_nvmlInitWithFlags(self, flags: Any) -> None:
        self.fake.nvmlInitWithFlags(_v(flags))

    def c_nvmlShutdown(self) -> None:
        self.fake.nvmlShutdown()

    def c_nvmlSystemGetDriverVersion(self, buffer: Any, size: Any) -> None:
        self._text(buffer, self.fake.nvmlSystemGetDriverVersion())

    def c_nvmlSystemGetNVMLVersion(self, buffer: Any, size: Any) -> None:
        self._text(buffer, self.fake.nvmlSystemGetNVMLVersion())

    def c_nvmlSystemGetCudaDriverVersion(self, version: Any) -> None:
        self._set(version, self.fake.nvmlSystemGetCudaDriverVersion())

    def c_nvmlDeviceGetCount_v2(self, count: Any) -> None:
        self._set(count, self.fake.nvmlDeviceGetCount())

    def c_nvmlDeviceGetHandleByIndex_v2(self, index: Any, device: Any) -> None:
        self._set_pointer(device, self.fake.nvmlDeviceGetHandleByIndex(_v(index)))

    def c_nvmlDeviceGetName(self, handle: Any, buffer: Any, size: Any) -> None:
        self._text(buffer, self.fake.nvmlDeviceGetName(handle))

    def c_nvmlDeviceGetUUID(self, handle: Any, buffer: Any, size: Any) -> None:
        self._text(buffer, self.fake.nvmlDeviceGetUUID(handle))

    def c_nvmlDeviceGetMigMode(self, device: Any, current: Any, pending: Any) -> None:
        now, later = self.fake.nvmlDeviceGetMigMode(device)
        self._set(current, now)
        self._set(pending, later)

    def c_nvmlGpmQueryDeviceSupport(self, device: Any, support: Any) -> None:
        if support._obj.version != self.fake.NVML_GPM_SUPPORT_VERSION:
            raise self.fake.NVMLError(self.fake.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        support._obj.isSupportedDevice = self.fake.nvmlGpmQueryDeviceSupport(device).isSupportedDevice

    def c_nvmlDeviceGetMemoryInfo(self, handle: Any, memory: Any) -> None:
        self._copy(self.fake.nvmlDeviceGetMemoryInfo(handle), memory._obj)

    def c_nvmlDeviceGetMemoryInfo_v2(self, handle: Any, memory: Any) -> None:
        self._copy(self.fake.nvmlDeviceGetMemoryInfo(handle, version=memory._obj.version), memory._obj)

    def c_nvmlDeviceGetMaxMigDeviceCount(self, device: Any, count: Any) -> None:
        self._set(count, self.fake.nvmlDeviceGetMaxMigDeviceCount(device))

    def c_nvmlDeviceGetMigDeviceHandleByIndex(self, device: Any, index: Any, mig: Any) -> None:
        self._set_pointer(mig, self.fake.nvmlDeviceGetMigDeviceHandleByIndex(device, _v(index)))

    def c_nvmlDeviceGetGpuInstanceId(self, device: Any, gi: Any) -> None:
        self._set(gi, self.fake.nvmlDeviceGetGpuInstanceId(device))

    def c_nvmlDeviceGetComputeInstanceId(self, device: Any, ci: Any) -> None:
        self._set(ci, self.fake.nvmlDeviceGetComputeInstanceId(device))

    def c_nvmlDeviceGetAttributes_v2(self, device: Any, attributes: Any) -> None:
        self._copy(self.fake.nvmlDeviceGetAttributes_v2(device), attributes._obj)

    def c_nvmlDeviceGetGpuInstanceProfileInfoV(self, device: Any, profile: Any, info: Any) -> None:
        if info._obj.version != self.fake.nvmlGpuInstanceProfileInfo_v2:
            raise self.fake.NVMLError(self.fake.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        self._copy(self.fake.nvmlDeviceGetGpuInstanceProfileInfo(device, _v(profile), version=2), info._obj)

    def c_nvmlDeviceGetGpuInstanceById(self, device: Any, gi: Any, instance: Any) -> None:
        self._set_pointer(instance, self.fake.nvmlDeviceGetGpuInstanceById(device, _v(gi)))

    def c_nvmlGpuInstanceGetInfo(self, instance: Any, info: Any) -> None:
        self._copy(self.fake.nvmlGpuInstanceGetInfo(instance), info._obj)

    def c_nvmlDeviceGetPowerUsage(self, handle: Any, milliwatts: Any) -> None:
        self._set(milliwatts, self.fake.nvmlDeviceGetPowerUsage(handle))

    def c_nvmlDeviceGetTemperature(self, handle: Any, sensor: Any, celsius: Any) -> None:
        self._set(celsius, self.fake.nvmlDeviceGetTemperature(handle, _v(sensor)))

    def c_nvmlDeviceGetPciInfo_v3(self, handle: Any, info: Any) -> None:
        self._copy(self.fake.nvmlDeviceGetPciInfo_v3(handle), info._obj)

    def c_nvmlDeviceGetClockInfo(self, handle: Any, clock: Any, mhz: Any) -> None:
        self._set(mhz, self.fake.nvmlDeviceGetClockInfo(handle, _v(clock)))

    def c_nvmlDeviceGetTotalEnergyConsumption(self, handle: Any, millijoules: Any) -> None:
        self._set(millijoules, self.fake.nvmlDeviceGetTotalEnergyConsumption(handle))

    def c_nvmlDeviceGetPcieReplayCounter(self, handle: Any, replays: Any) -> None:
        self._set(replays, self.fake.nvmlDeviceGetPcieReplayCounter(handle))

    def c_nvmlDeviceGetRemappedRows(self, device: Any, corr: Any, unc: Any, pending: Any, failure: Any) -> None:
        for ref, value in zip((corr, unc, pending, failure), self.fake.nvmlDeviceGetRemappedRows(device), strict=True):
            self._set(ref, value)

    def c_nvmlDeviceGetEncoderUtilization(self, handle: Any, utilization: Any, period: Any) -> None:
        self._codec(self.fake.nvmlDeviceGetEncoderUtilization(handle), utilization, period)

    def c_nvmlDeviceGetDecoderUtilization(self, handle: Any, utilization: Any, period: Any) -> None:
        self._codec(self.fake.nvmlDeviceGetDecoderUtilization(handle), utilization, period)

    def _codec(self, got: list[int], utilization: Any, period: Any) -> None:
        self._set(utilization, got[0])
        self._set(period, got[1])

    def c_nvmlDeviceGetUtilizationRates(self, handle: Any, utilization: Any) -> None:
        self._copy(self.fake.nvmlDeviceGetUtilizationRates(handle), utilization._obj)

    def c_nvmlDeviceGetFieldValues(self, handle: Any, count: Any, values: Any) -> None:
        array = values._obj
        requests = [(array[i].fieldId, array[i].scopeId) for i in range(_v(count))]
        filled = self.fake.nvmlDeviceGetFieldValues(handle, requests)
        for i in range(_v(count)):
            ctypes.memmove(ctypes.addressof(array[i]), ctypes.addressof(filled[i]), ctypes.sizeof(array[i]))

    def c_nvmlGpmSampleAlloc(self, sample: Any) -> None:
        self._set_pointer(sample, self.fake.nvmlGpmSampleAlloc())

    def c_nvmlGpmSampleFree(self, sample: Any) -> None:
        self.fake.nvmlGpmSampleFree(sample)

    def c_nvmlGpmSampleGet(self, device: Any, sample: Any) -> None:
        self.fake.nvmlGpmSampleGet(device, sample)

    def c_nvmlGpmMigSampleGet(self, device: Any, gi: Any, sample: Any) -> None:
        self.fake.nvmlGpmMigSampleGet(device, _v(gi), sample)

    def c_nvmlGpmMetricsGet(self, metrics: Any) -> None:
        self.fake.nvmlGpmMetricsGet(metrics._obj)  # the fake reads and fills the real struct's fields

    def c_nvmlDeviceGetIndex(self, handle: Any, index: Any) -> None:
        self._set(index, self.fake.nvmlDeviceGetIndex(handle))

    def c_nvmlEventSetCreate(self, event_set: Any) -> None:
        self._set_pointer(event_set, self.fake.nvmlEventSetCreate())

    def c_nvmlDeviceGetSupportedEventTypes(self, handle: Any, types: Any) -> None:
        self._set(types, self.fake.nvmlDeviceGetSupportedEventTypes(handle))

    def c_nvmlDeviceRegisterEvents(self, handle: Any, types: Any, event_set: Any) -> None:
        self.fake.nvmlDeviceRegisterEvents(handle, _v(types), event_set)

    def c_nvmlEventSetWait_v2(self, event_set: Any, data: Any, timeout_ms: Any) -> None:
        self._copy(self.fake.nvmlEventSetWait_v2(event_set, _v(timeout_ms)), data._obj)

    def c_nvmlEventSetFree(self, event_set: Any) -> None:
        self.fake.nvmlEventSetFree(event_set)


def _v(value: Any) -> Any:
    """A plain value from a ctypes scalar or a Python int."""
    return getattr(value, "value", value)
