"""The NVML source on a real GPU: discovery, memory, activity, power and temperature, MIG series.

Run with `python -m pytest -m gpu tests/hardware`. The load tests need torch (they run
tests/hardware/workload.py on the first GPU, or on its first MIG device).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.contract.thresholds import IDLE_RATIO
from exporter.exposition.native import native_families
from exporter.exposition.render import Renderer
from exporter.model import Entity, Field, Gpu, GpuSample, Topology
from exporter.sampler import Sampler
from exporter.sources.nvml import NvmlSource
from tests.hardware.workload import Workload

pytestmark = pytest.mark.gpu

BUSY_RATIO = 0.8
MEMORY_TOLERANCE = 0.01
NVML_NOT_FOUND = 6


@dataclass(frozen=True)
class MigDevice:
    gi: int
    ci: int
    uuid: str


@dataclass(frozen=True)
class Direct:
    """One GPU as NVML itself lists it."""

    index: int
    uuid: str
    name: str
    mig_enabled: bool
    devices: tuple[MigDevice, ...]


def text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_directly(nvml: ModuleType) -> list[Direct]:
    """Every GPU and MIG device through plain NVML calls, for comparison with the source."""
    out = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        try:
            mig = bool(nvml.nvmlDeviceGetMigMode(handle)[0])
        except nvml.NVMLError:
            mig = False
        devices = []
        if mig:
            for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
                try:
                    device = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                except nvml.NVMLError as exc:
                    if int(exc.value) == NVML_NOT_FOUND:
                        continue
                    raise
                gi = int(nvml.nvmlDeviceGetGpuInstanceId(device))
                ci = int(nvml.nvmlDeviceGetComputeInstanceId(device))
                devices.append(MigDevice(gi, ci, text(nvml.nvmlDeviceGetUUID(device))))
        name = text(nvml.nvmlDeviceGetName(handle))
        out.append(Direct(index, text(nvml.nvmlDeviceGetUUID(handle)), name, mig, tuple(devices)))
    return out


class Reader:
    """An NVML source on its own event loop, so synchronous tests can discover and sample."""

    def __init__(self, nvml: ModuleType) -> None:
        self.loop = asyncio.new_event_loop()
        self.source = NvmlSource(nvml)
        self.topology: Topology = self.run(self.source.discover())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def gpu(self, index: int) -> Gpu:
        gpu = self.topology.gpu(index)
        assert gpu is not None
        return gpu

    def sample(self, index: int) -> GpuSample:
        sample: GpuSample = self.run(self.source.sample(self.gpu(index)))
        return sample

    def close(self) -> None:
        self.run(self.source.close())
        self.loop.close()


@pytest.fixture
def reader(nvml: ModuleType) -> Iterator[Reader]:
    r = Reader(nvml)
    yield r
    r.close()


@dataclass(frozen=True)
class Target:
    """Where the workload runs: GPU 0 (MIG off) or its first MIG device, and the entities that show it."""

    gpu: int
    visible: str  # CUDA_VISIBLE_DEVICES
    memory: Entity  # whose memory used grows by the allocation
    activity: Entity  # whose graphics-engine activity the load drives


def target(reader: Reader) -> Target:
    gpu = reader.gpu(0)
    if not gpu.mig_enabled:
        return Target(0, gpu.uuid, Entity(0), Entity(0))
    for inst in gpu.instances:
        for ci in inst.compute_instances:
            return Target(0, ci.mig_uuid, Entity(0, inst.gi), Entity(0, inst.gi, ci.ci))
    pytest.skip("GPU 0 has MIG enabled but no MIG device to run a workload on")


def needs_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not importable: the load tests need it")


def test_discovery_agrees_with_nvml(nvml: ModuleType, reader: Reader) -> None:
    """The source finds every GPU NVML lists, with its UUID, name and MIG mode, and every MIG device."""
    direct = read_directly(nvml)
    assert [g.index for g in reader.topology.gpus] == [d.index for d in direct]
    for d in direct:
        gpu = reader.gpu(d.index)
        assert (gpu.uuid, gpu.model, gpu.mig_enabled) == (d.uuid, d.name, d.mig_enabled)
        found = {MigDevice(i.gi, c.ci, c.mig_uuid) for i in gpu.instances for c in i.compute_instances}
        assert found == set(d.devices)
        assert {i.gi for i in gpu.instances} == {m.gi for m in d.devices}


def test_power_and_temperature_are_plausible(reader: Reader) -> None:
    """Every GPU draws between 10 W and 1.2 kW and sits between 5 and 100 degrees Celsius."""
    for gpu in reader.topology.gpus:
        sample = reader.sample(gpu.index)
        power = sample.get(Entity(gpu.index), Field.POWER)
        temperature = sample.get(Entity(gpu.index), Field.TEMPERATURE)
        assert power is not None and 10.0 < power < 1200.0, (gpu.index, power, sample.unsupported)
        assert temperature is not None and 5.0 < temperature < 100.0, (gpu.index, temperature)


# GPU-wide fields and the range a real GPU reads them in (base units), where the driver offers them.
PLAUSIBLE = {
    Field.SM_CLOCK: (1e8, 4e9),
    Field.MEMORY_CLOCK: (1e8, 1.2e10),
    Field.MEMORY_TEMPERATURE: (5.0, 110.0),
    Field.ENCODER_UTIL: (0.0, 1.0),
    Field.DECODER_UTIL: (0.0, 1.0),
    Field.MEMORY_RESERVED: (0.0, 8 * 2**30),
    Field.ROW_REMAP_FAILURE: (0.0, 1.0),
}


def test_clocks_energy_and_health_are_plausible_or_absent_with_a_reason(reader: Reader) -> None:
    """Each GPU-wide field is in a real GPU's range or absent with the driver's reason; energy only grows."""
    for gpu in reader.topology.gpus:
        first = reader.sample(gpu.index)
        time.sleep(0.5)
        second = reader.sample(gpu.index)
        whole = second.values[Entity(gpu.index)]
        for fld, (low, high) in PLAUSIBLE.items():
            if fld in whole:
                assert low <= whole[fld] <= high, (gpu.index, fld, whole[fld])
            else:
                assert fld in second.unsupported, (gpu.index, fld)
        energy = (first.get(Entity(gpu.index), Field.ENERGY), second.get(Entity(gpu.index), Field.ENERGY))
        if None not in energy:
            assert 0 < energy[0] <= energy[1], (gpu.index, energy)
        for fld in (Field.REMAPPED_ROWS_CORRECTABLE, Field.REMAPPED_ROWS_UNCORRECTABLE, Field.PCIE_REPLAYS):
            if fld in whole:
                assert whole[fld] >= 0 and whole[fld] == int(whole[fld]), (gpu.index, fld, whole[fld])
            else:  # remapped rows: NotSupported with MIG on
                assert fld in second.unsupported, (gpu.index, fld)
        assert gpu.pci_bus_id.count(":") == 2, gpu.pci_bus_id


def test_mig_series_match_what_nvml_lists(nvml: ModuleType, reader: Reader) -> None:
    """With MIG on, the exposition has one instance series per GPU instance and one per MIG device NVML lists."""
    direct = [d for d in read_directly(nvml) if d.mig_enabled]
    if not direct:
        pytest.skip("no GPU has MIG enabled (the tests never enable it)")
    sampler = Sampler(reader.source, interval=1.0, deadline=10.0)
    snapshot = reader.run(sampler.run_once())
    seen: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for metric in text_string_to_metric_families(Renderer((native_families,)).render(snapshot).decode()):
        for s in metric.samples:
            seen.setdefault(metric.name, set()).add(tuple(sorted(s.labels.items())))
    for d in direct:
        gpu = str(d.index)
        instances = {dict(labels)["gi"] for labels in seen["mig_instance_info"] if dict(labels)["gpu"] == gpu}
        devices = {
            dict(labels)["mig_uuid"] for labels in seen["mig_compute_instance_info"] if dict(labels)["gpu"] == gpu
        }
        assert instances == {str(m.gi) for m in d.devices}
        assert devices == {m.uuid for m in d.devices}


def test_memory_used_rises_by_an_allocation(reader: Reader) -> None:
    """While a process holds N bytes on the device, memory used is N higher (within 1 %)."""
    needs_torch()
    where = target(reader)
    total = reader.sample(where.gpu).get(where.memory, Field.MEMORY_TOTAL)
    assert total is not None
    size_mib = min(2048, int(total / 2**20 / 4)) // 2 * 2  # at most a quarter of the device, whole 2 MiB pages
    workload = Workload(where.visible, "--alloc-mib", str(size_mib), "--seconds", "60")
    try:
        workload.expect("ready")  # its CUDA context is there: measure from here
        time.sleep(0.5)
        before = reader.sample(where.gpu).get(where.memory, Field.MEMORY_USED)
        workload.send("go")
        workload.expect("allocated")
        time.sleep(0.5)
        during = reader.sample(where.gpu).get(where.memory, Field.MEMORY_USED)
    finally:
        workload.stop()
    assert before is not None and during is not None
    grown = during - before
    assert abs(grown - size_mib * 2**20) <= MEMORY_TOLERANCE * size_mib * 2**20, (grown, size_mib)


def activity(reader: Reader, where: Target, seconds: float) -> list[float]:
    """gr_engine_active of the target, read every second for `seconds` (GPM needs two readings).

    Skips the test when NVML reads no activity for it at all, with the reason the source gives.
    """
    readings = []
    reader.sample(where.gpu)
    ends = time.monotonic() + seconds
    reason = ""
    while time.monotonic() < ends:
        time.sleep(1.0)
        sample = reader.sample(where.gpu)
        value = sample.get(where.activity, Field.GR_ENGINE_ACTIVE)
        if value is not None:
            readings.append(value)
        reason = sample.unsupported.get(Field.GR_ENGINE_ACTIVE, reason)
    if not readings:
        pytest.skip(f"NVML reads no graphics-engine activity for {where.activity} here ({reason or 'no value'})")
    return readings


def test_graphics_engine_activity_idle_and_under_load(nvml: ModuleType, reader: Reader) -> None:
    """Idle, gr_engine_active reads under 0.05; while a matmul loop runs, over 0.8."""
    needs_torch()
    where = target(reader)
    support = nvml.nvmlGpmQueryDeviceSupport(nvml.nvmlDeviceGetHandleByIndex(where.gpu))
    if not support.isSupportedDevice:
        pytest.skip(f"{reader.gpu(where.gpu).model} has no GPM: NVML reads no activity on it")
    idle = activity(reader, where, 3.0)
    if max(idle) >= IDLE_RATIO:
        pytest.skip(f"the device is not idle (activity {max(idle):.2f}): another workload runs on it")
    workload = Workload(where.visible, "--matmul", "--seconds", "30")
    try:
        workload.expect("ready")
        workload.send("go")
        workload.expect("running")
        time.sleep(2.0)
        busy = activity(reader, where, 5.0)
    finally:
        workload.stop()
    assert busy and max(busy) > BUSY_RATIO, busy
