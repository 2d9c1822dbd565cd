"""The fake pynvml matches the installed nvidia-ml-py: functions, structs, constants, errors and quirks."""

from __future__ import annotations

import ctypes
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from exporter.sources.synthetic.simulator import Simulator
from tests.support.nvml import load_fake_pynvml

real = pytest.importorskip("pynvml")

SOURCE = Path(__file__).resolve().parent.parent / "exporter" / "sources" / "nvml.py"

# Sizes that grow with each nvidia-ml-py release; the fake follows 13.615.71.
RELEASE_DEPENDENT = {"NVML_GPM_METRIC_MAX", "NVML_GPU_INSTANCE_PROFILE_COUNT"}


@pytest.fixture
def fake(dgx: Simulator) -> Iterator[ModuleType]:
    """A fresh fake over dgx-h100, initialised."""
    module = load_fake_pynvml()
    module.install(dgx)
    module.nvmlInit()
    yield module


def public_functions(module: ModuleType) -> dict[str, object]:
    return {n: f for n, f in vars(module).items() if n.startswith("nvml") and inspect.isfunction(f)}


def test_nvml_fake_function_signatures_match_real() -> None:
    """Every nvml* function of the fake exists in nvidia-ml-py with the same parameters and defaults."""
    fake = load_fake_pynvml()
    functions = public_functions(fake)
    text = SOURCE.read_text()
    used = (
        set(re.findall(r"nvml\.(nvml\w+)\(", text))
        | set(re.findall(r"partial\(nvml\.(\w+)", text))
        | set(re.findall(r'"(nvmlDevice\w+)"', text))  # called by name from a table (the GPU-wide reads)
    )
    assert {"nvmlDeviceGetClockInfo", "nvmlDeviceGetTotalEnergyConsumption"} <= used
    assert len(used) > 20 and used <= functions.keys()  # the fake covers every function the source calls
    for name, fn in functions.items():
        assert hasattr(real, name), name
        assert inspect.signature(fn).parameters.keys() == inspect.signature(getattr(real, name)).parameters.keys(), name
        for mine, theirs in zip(
            inspect.signature(fn).parameters.values(),
            inspect.signature(getattr(real, name)).parameters.values(),
            strict=True,
        ):
            assert (mine.kind, mine.default) == (theirs.kind, theirs.default), (name, mine.name)


def test_nvml_fake_structs_match_real() -> None:
    """The fake's ctypes structs have nvidia-ml-py's field names and field sizes."""
    fake = load_fake_pynvml()
    structs = {n: c for n, c in vars(fake).items() if n.startswith("c_") and isinstance(c, type)}
    assert "c_nvmlGpmMetricsGet_t" in structs and "c_nvmlMemory_v2_t" in structs
    for name, cls in structs.items():
        theirs = getattr(real, name)
        if not issubclass(cls, ctypes.Structure):
            continue
        assert [f[0] for f in cls._fields_] == [f[0] for f in theirs._fields_], name
        if name != "c_nvmlGpmMetricsGet_t":  # its metrics array is NVML_GPM_METRIC_MAX long
            assert ctypes.sizeof(cls) == ctypes.sizeof(theirs), name


def test_nvml_fake_constants_and_error_classes_match_real() -> None:
    """Constants have the real values and NVMLError(code) builds the same-named subclass in both modules."""
    fake = load_fake_pynvml()
    constants = {n: v for n, v in vars(fake).items() if n.startswith(("NVML_", "nvmlEvent")) or n.endswith("_v2")}
    assert "nvmlEventTypeXidCriticalError" in constants
    for name, value in constants.items():
        if isinstance(value, int) and name not in RELEASE_DEPENDENT:
            assert getattr(real, name) == value, name
    for code in (3, 4, 6, 15, 16, 999):
        mine, theirs = fake.NVMLError(code), real.NVMLError(code)
        assert type(mine).__name__ == type(theirs).__name__
        assert isinstance(mine, fake.NVMLError) and mine.value == code
        assert isinstance(mine, getattr(fake, type(theirs).__name__))
    assert str(fake.NVMLError(15)) == str(real.NVMLError(15)) == "GPU is lost"
    with pytest.raises(TypeError):
        hash(fake.NVMLError(3))  # unhashable, like the real class


def test_nvml_fake_quirks(fake: ModuleType) -> None:
    """The quirks code must cope with: c_uint flags, sparse MIG slots, MIG-handle NotSupported, version constants."""
    gpu1 = fake.nvmlDeviceGetHandleByIndex(1)
    assert gpu1 != fake.nvmlDeviceGetHandleByIndex(1)  # two handles to one GPU compare unequal
    assert isinstance(fake.nvmlDeviceGetName(gpu1), str)
    with pytest.raises(fake.NVMLError_NotFound):
        fake.nvmlDeviceGetMigDeviceHandleByIndex(gpu1, 1)  # 3g at 0 and at 4: slot 1 is empty
    mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(gpu1, 4)
    flag = fake.nvmlDeviceIsMigDeviceHandle(mig)
    assert isinstance(flag, ctypes.c_uint) and flag.value == 1
    assert fake.nvmlDeviceGetUUID(mig).startswith("MIG-")
    for call in (fake.nvmlDeviceGetUtilizationRates, fake.nvmlDeviceGetPowerUsage):
        with pytest.raises(fake.NVMLError_NotSupported):
            call(mig)
    with pytest.raises(fake.NVMLError_NotSupported):
        fake.nvmlDeviceGetUtilizationRates(gpu1)  # MIG on: no whole-GPU utilization
    with pytest.raises(fake.NVMLError_ArgumentVersionMismatch):
        fake.nvmlDeviceGetMemoryInfo(mig, version=2)
    memory = fake.nvmlDeviceGetMemoryInfo(mig, version=fake.nvmlMemory_v2)
    assert memory.total == memory.reserved + memory.free + memory.used
    info = fake.nvmlDeviceGetGpuInstanceProfileInfo(gpu1, fake.NVML_GPU_INSTANCE_PROFILE_3_SLICE)
    assert (info.id, info.name) == (9, "MIG 3g.40gb")  # enum index 2 -> profile ID 9
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetGpuInstanceProfileInfo(gpu1, fake.NVML_GPU_INSTANCE_PROFILE_COUNT)
    fake.driver().privileged = False
    with pytest.raises(fake.NVMLError_NoPermission):
        fake.nvmlDeviceGetGpuInstanceById(gpu1, 1)
    with pytest.raises(fake.NVMLError_NoPermission):
        fake.nvmlDeviceGetMemoryInfo(gpu1, version=fake.nvmlMemory_v2)


def test_nvml_fake_gpm_checks_its_inputs(fake: ModuleType) -> None:
    """GPM metrics need the struct version set, two filled samples, and report each metric's own nvmlReturn."""
    gpu0 = fake.nvmlDeviceGetHandleByIndex(0)
    first, second = fake.nvmlGpmSampleAlloc(), fake.nvmlGpmSampleAlloc()
    metrics = fake.c_nvmlGpmMetricsGet_t()
    metrics.numMetrics = 2
    metrics.sample1, metrics.sample2 = first, second
    metrics.metrics[0].metricId = fake.NVML_GPM_METRIC_GRAPHICS_UTIL
    metrics.metrics[1].metricId = 60  # NVLink RX: not modelled, so NotSupported in its own nvmlReturn
    with pytest.raises(fake.NVMLError_ArgumentVersionMismatch):
        fake.nvmlGpmMetricsGet(metrics)
    metrics.version = fake.NVML_GPM_METRICS_GET_VERSION
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlGpmMetricsGet(metrics)  # samples not taken yet
    clock = iter([100.0, 101.0])
    fake.driver().clock = lambda: next(clock)
    fake.nvmlGpmMigSampleGet(gpu0, 1, first)
    fake.nvmlGpmMigSampleGet(gpu0, 1, second)
    fake.nvmlGpmMetricsGet(metrics)
    assert metrics.metrics[0].nvmlReturn == fake.NVML_SUCCESS
    assert metrics.metrics[0].value == pytest.approx(80.0)  # GPU 0, GI 1 runs at 0.8
    assert metrics.metrics[1].nvmlReturn == fake.NVML_ERROR_NOT_SUPPORTED
    fake.nvmlGpmSampleFree(first)
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlGpmSampleFree(first)  # freed twice
