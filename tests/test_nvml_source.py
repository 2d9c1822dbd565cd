"""The NVML source over the fake pynvml (and the real nvidia-ml-py on the simulated library): topology, GPM
activity, memory, faults per GPU, and XID errors through NVML's event API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from threading import Event
from types import ModuleType

import pytest

from exporter.exposition.health import exporter_families
from exporter.exposition.native import native_families
from exporter.exposition.render import Renderer
from exporter.model import ACTIVITY_FIELDS, Entity, Field, GpuSample, Snapshot, Topology, XidKey
from exporter.sampler import Sampler
from exporter.sources import SourceOptions, open_source
from exporter.sources.base import SourceUnavailableError
from exporter.sources.nvml import NvmlSource
from exporter.sources.synthetic.scenario import parse
from exporter.sources.synthetic.simulator import PCIE_RX_MAX, Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.clock import ManualClock
from tests.support.nvml import SimulatedLibrary, load_fake_pynvml

# The fake's GPM ratios are means over the window between two readings (1 s here); the truth
# is the simulator's value at the window's end, so patterned workloads may differ slightly.
ACTIVITY_TOLERANCE = 0.02
PCIE_TOLERANCE = ACTIVITY_TOLERANCE * PCIE_RX_MAX
START = 1_700_000_000.0
# NVML refuses remapped rows on a MIG-enabled GPU (NotSupported).
REMAPPED = (Field.REMAPPED_ROWS_CORRECTABLE, Field.REMAPPED_ROWS_UNCORRECTABLE, Field.ROW_REMAP_FAILURE)
MIG_REFUSED = dict.fromkeys(REMAPPED, "not_supported")
GPM = (*ACTIVITY_FIELDS, Field.PCIE_TX_RATE, Field.PCIE_RX_RATE)  # what NVML reads through GPM


@pytest.fixture
def clock() -> ManualClock:
    """A hand-driven clock."""
    return ManualClock(START)


@pytest.fixture
def fake(dgx: Simulator, clock: ManualClock) -> Iterator[ModuleType]:
    """A fresh fake pynvml backed by the dgx-h100 simulator, privileged."""
    module = load_fake_pynvml()
    module.install(dgx, clock=clock)
    yield module
    module.release_all()


@pytest.fixture(params=["fake", "real"])
def library(request: pytest.FixtureRequest, fake: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The `pynvml` the source is given: the fake itself, or the real nvidia-ml-py over the simulated C library."""
    if request.param == "fake":
        return fake
    real = pytest.importorskip("pynvml")
    SimulatedLibrary(fake).attach(real, monkeypatch)
    return real


@pytest.fixture
async def source(library: ModuleType, clock: ManualClock) -> AsyncIterator[NvmlSource]:
    """An NVML source over `library`, closed after the test."""
    src = NvmlSource(library, clock=clock)
    yield src
    await src.close()


async def sample_all(src: NvmlSource, topology: Topology) -> dict[int, GpuSample]:
    return {g.index: await src.sample(g) for g in topology.gpus}


async def two_cycles(src: NvmlSource, clock: ManualClock) -> tuple[Topology, dict[int, GpuSample]]:
    """Discover, take the first GPM readings, move the clock 1 s and sample again."""
    topology = await src.discover()
    await sample_all(src, topology)
    clock.now += 1.0
    return topology, await sample_all(src, topology)


async def test_nvml_discovery_matches_synthetic_topology(source: NvmlSource, dgx: Simulator) -> None:
    """On dgx-h100 the NVML source finds the same GPUs, GPU instances, compute instances and placements."""
    assert await source.discover() == await SyntheticSource(dgx).discover()


async def test_nvml_activity_and_memory_match_simulator_truth(
    source: NvmlSource, dgx: Simulator, clock: ManualClock
) -> None:
    """Every GPM reading is within 0.02 of the simulator's truth (of full scale); the other fields are exact.

    Each field lands on its entity: clocks, energy, remapped rows and NVLink on the GPU, PCIe traffic on the
    GPU instances (or the GPU with MIG disabled); remapped rows are refused on MIG-enabled GPUs, with the reason.
    """
    clock.now += 86400.0  # a day after the simulated boot: the counters have counted
    topology, samples = await two_cycles(source, clock)
    checked = 0
    for gpu in topology.gpus:
        truth = dgx.sample(gpu.index, clock.now)
        got = samples[gpu.index]
        refused = REMAPPED if gpu.mig_enabled else ()
        assert got.unsupported == dict.fromkeys(refused, "not_supported")
        assert set(got.values) == set(truth.values)
        assert got.values[Entity(gpu.index)][Field.XID_ERRORS] == 0  # counted from events, none raised
        for entity, fields in truth.values.items():
            assert set(got.values[entity]) - {Field.XID_ERRORS} == set(fields) - set(refused), entity
            for fld, expected in fields.items():
                if fld in refused:
                    continue
                value = got.values[entity][fld]
                if fld in ACTIVITY_FIELDS:
                    assert value == pytest.approx(expected, abs=ACTIVITY_TOLERANCE), (entity, fld)
                elif fld in (Field.PCIE_TX_RATE, Field.PCIE_RX_RATE):
                    assert value == pytest.approx(expected, abs=PCIE_TOLERANCE), (entity, fld)
                elif fld in (Field.POWER, Field.ENERGY):
                    assert value == pytest.approx(expected, abs=1e-3), (entity, fld)
                else:
                    assert value == expected, (entity, fld)
                checked += 1
    assert checked > 300


async def test_nvml_first_cycle_has_no_activity_yet(source: NvmlSource) -> None:
    """GPM needs two readings: the first cycle reports memory but no ratios, and says why."""
    topology = await source.discover()
    first = await source.sample(topology.gpus[0])
    # NVLink traffic is a rate too: the counters' rise since the previous cycle.
    assert first.unsupported == {**dict.fromkeys((*GPM, Field.NVLINK_RATE), "warming_up"), **MIG_REFUSED}
    assert first.get(Entity(0, 1), Field.MEMORY_USED) is not None
    assert first.get(Entity(0, 1), Field.GR_ENGINE_ACTIVE) is None


async def test_nvml_gpm_buffers_are_reused_and_freed_on_close(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """Two GPM buffers per instance are allocated once, reused every cycle, and freed with NVML shut down on close."""
    topology, _ = await two_cycles(source, clock)
    entities = sum(1 + len(i.compute_instances) for _, i in topology.iter_instances()) + 1  # + GPU 7, MIG off
    for _ in range(3):
        clock.now += 1.0
        await sample_all(source, topology)
    driver = fake.driver()
    assert len(driver.samples) == 2 * entities
    assert driver.calls["nvmlGpmSampleAlloc"] == 2 * entities
    await source.close()
    assert driver.samples == {}
    assert driver.initialized == 0


async def test_nvml_calls_per_cycle_on_dgx_h100(fake: ModuleType, source: NvmlSource, clock: ManualClock) -> None:
    """A steady-state cycle on dgx-h100 costs one fixed set of NVML calls: per GPU, GPU instance and MIG device."""
    topology, _ = await two_cycles(source, clock)
    driver = fake.driver()
    driver.calls.clear()
    clock.now += 1.0
    await sample_all(source, topology)
    gis = sum(1 for _ in topology.iter_instances())
    cis = sum(1 for _ in topology.iter_compute_instances())
    gpus = len(topology.gpus)
    whole = sum(1 for g in topology.gpus if not g.mig_enabled)
    empty_slots = sum(fake.MAX_MIG_DEVICES for g in topology.gpus if g.mig_enabled) - cis
    assert driver.calls == {
        "nvmlDeviceGetUUID": cis,  # each MIG handle still names the discovered device
        "nvmlDeviceGetMigDeviceHandleByIndex": empty_slots,  # each empty slot is still empty (no instance added)
        "nvmlDeviceGetPowerUsage": gpus,
        "nvmlDeviceGetTemperature": gpus,
        "nvmlDeviceGetClockInfo": 2 * gpus,  # SM and memory
        "nvmlDeviceGetTotalEnergyConsumption": gpus,
        "nvmlDeviceGetPcieReplayCounter": gpus,
        "nvmlDeviceGetRemappedRows": gpus,
        "nvmlDeviceGetEncoderUtilization": gpus,
        "nvmlDeviceGetDecoderUtilization": gpus,
        "nvmlDeviceGetFieldValues": gpus,  # memory temperature and NVLink in one call
        "nvmlDeviceGetUtilizationRates": whole,
        "nvmlDeviceGetMemoryInfo": gis + gpus,
        "nvmlGpmMigSampleGet": gis,
        "nvmlGpmSampleGet": cis + whole,
        "nvmlGpmMetricsGet": gis + cis + whole,
    }
    assert empty_slots == 21
    assert sum(driver.calls.values()) == 268  # 203 before the clocks, energy, I/O and health reads


async def test_nvml_unprivileged_degrades_to_mig_handles(
    fake: ModuleType, source: NvmlSource, dgx: Simulator, clock: ManualClock
) -> None:
    """Without GI privileges, profiles come from MIG device attributes, placements are unknown, memory still adds up."""
    fake.driver().privileged = False
    topology, samples = await two_cycles(source, clock)
    truth = dgx.topology()
    for got, want in zip(topology.gpus, truth.gpus, strict=True):
        assert (got.uuid, got.memory_total_bytes, got.mig_enabled) == (
            want.uuid,
            want.memory_total_bytes,
            want.mig_enabled,
        )
        assert len(got.instances) == len(want.instances)
        for g, w in zip(got.instances, want.instances, strict=True):
            assert (g.gi, g.profile, g.profile_id, g.compute_slices, g.memory_slices, g.memory_total_bytes) == (
                w.gi,
                w.profile,
                w.profile_id,
                w.compute_slices,
                w.memory_slices,
                w.memory_total_bytes,
            )
            assert g.placement_start is None
            assert g.compute_instances == w.compute_instances
    assert fake.driver().calls["nvmlDeviceGetGpuInstanceProfileInfo"] > 0  # it was tried, and refused
    for index in range(7):  # MIG GPUs: whole-GPU memory is the sum of the instances'
        assert samples[index].get(Entity(index), Field.MEMORY_USED) == dgx.gpu_memory_used(index, clock.now)
        assert samples[index].unsupported == {**MIG_REFUSED, Field.MEMORY_RESERVED: "no_permission"}


async def test_nvml_unprivileged_on_a_board_missing_from_the_catalog(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """An unknown model without GI privileges still gets profile names, slices and memory from the MIG devices."""
    fake.driver().privileged = False
    fake.set_model(1, "NVIDIA Future GPU", gpm=True)
    fake.set_model(6, "NVIDIA Future GPU", gpm=True)
    topology, samples = await two_cycles(source, clock)
    gpu1 = topology.gpus[1]
    assert gpu1.board is None and gpu1.memory_total_bytes == sum(i.memory_total_bytes for i in gpu1.instances)
    assert [(i.profile, i.profile_id, i.compute_slices, i.memory_slices) for i in gpu1.instances] == [
        ("3g.40gb", -1, 3, 4),
        ("3g.40gb", -1, 3, 4),
    ]
    assert [i.profile for i in topology.gpus[6].instances] == ["2g.20gb", "2g.20gb", "1g.10gb+me", "1g.10gb", "1g.10gb"]
    assert samples[1].get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) == pytest.approx(0.7, abs=ACTIVITY_TOLERANCE)


async def test_nvml_a100_without_gpm_reports_why_activity_is_absent(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """On an A100 (no GPM) every activity series is absent, memory is read, and field_supported names no_gpm."""
    fake.set_model(1, "NVIDIA A100-SXM4-80GB", gpm=False)
    fake.set_model(7, "NVIDIA A100-SXM4-80GB", gpm=False)
    topology, samples = await two_cycles(source, clock)
    assert topology.gpus[1].model == "NVIDIA A100-SXM4-80GB"
    assert [i.profile for i in topology.gpus[1].instances] == ["3g.40gb", "3g.40gb"]
    for index in (1, 7):
        sample = samples[index]
        refused = MIG_REFUSED if topology.gpus[index].mig_enabled else {}
        assert sample.unsupported == {**dict.fromkeys(GPM, "no_gpm"), **refused}
        assert all(f not in values for values in sample.values.values() for f in GPM)
    assert samples[1].get(Entity(1, 1), Field.MEMORY_USED) is not None
    assert samples[0].get(Entity(0, 1), Field.GR_ENGINE_ACTIVE) is not None  # the H100s keep their activity
    snapshot = (await run_sampler_once(source, topology, samples)).decode()
    assert 'mig_exporter_field_supported{field="gr_engine_active",gpu="1",reason="no_gpm"} 0.0' in snapshot
    assert 'mig_instance_gr_engine_active_ratio{gi="1",gpu="1"' not in snapshot
    assert 'mig_gpu_gr_engine_active_ratio{gpu="7"' not in snapshot
    assert 'mig_instance_memory_used_bytes{gi="1",gpu="1"' in snapshot


async def run_sampler_once(source: NvmlSource, topology: Topology, samples: dict[int, GpuSample]) -> bytes:
    """The text exposition of a snapshot made from these samples."""
    from exporter.model import Snapshot

    snapshot = Snapshot(
        source=source.name, topology=topology, samples=samples, timestamp=START, duration=0.0, source_up=True, errors={}
    )
    return Renderer((native_families, exporter_families)).render(snapshot)


async def test_nvml_per_metric_error_drops_only_that_field(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """A GPM metric whose own nvmlReturn fails is absent with its reason; the other ratios are reported."""
    fake.fail_metric(fake.NVML_GPM_METRIC_DRAM_BW_UTIL, fake.NVML_ERROR_NOT_SUPPORTED)
    _, samples = await two_cycles(source, clock)
    sample = samples[1]
    assert sample.unsupported == {Field.DRAM_ACTIVE: "not_supported", **MIG_REFUSED}
    assert sample.get(Entity(1, 1), Field.DRAM_ACTIVE) is None
    assert sample.get(Entity(1, 1), Field.SM_ACTIVE) is not None


async def test_nvml_driver_without_memory_v2_falls_back_to_v1(
    fake: ModuleType, source: NvmlSource, dgx: Simulator, clock: ManualClock
) -> None:
    """On a driver without nvmlDeviceGetMemoryInfo_v2, memory is read through v1 (used then includes reserved)."""
    fake.driver().memory_v2 = False
    _, samples = await two_cycles(source, clock)
    assert samples[1].get(Entity(1, 1), Field.MEMORY_USED) == dgx.gi_memory_used(1, 1, clock.now)
    whole = samples[7].get(Entity(7), Field.MEMORY_USED)
    assert whole == dgx.gpu_memory_used(7, clock.now) + fake.PARENT_RESERVED_BYTES


async def test_nvml_without_per_instance_gpm_keeps_the_rest(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """When GPU-instance GPM is not supported, GPU instances lack ratios and PCIe traffic (absent with the reason),
    but compute instances and memory remain."""
    fake.driver().refused["nvmlGpmMigSampleGet"] = fake.NVML_ERROR_NOT_SUPPORTED
    _, samples = await two_cycles(source, clock)
    sample = samples[4]
    assert sample.get(Entity(4, 1), Field.GR_ENGINE_ACTIVE) is None
    assert sample.get(Entity(4, 1), Field.MEMORY_USED) is not None
    assert sample.get(Entity(4, 1, 0), Field.GR_ENGINE_ACTIVE) == pytest.approx(0.9, abs=ACTIVITY_TOLERANCE)
    assert sample.unsupported == {
        **MIG_REFUSED,
        **dict.fromkeys((Field.PCIE_TX_RATE, Field.PCIE_RX_RATE), "not_supported"),
    }


async def test_nvml_refused_power_and_temperature_are_absent_with_reason(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """Power the driver does not support and temperature it does not offer are absent, each with its reason."""
    fake.driver().refused["nvmlDeviceGetPowerUsage"] = fake.NVML_ERROR_NOT_SUPPORTED
    fake.driver().refused["nvmlDeviceGetTemperature"] = fake.NVML_ERROR_FUNCTION_NOT_FOUND
    _, samples = await two_cycles(source, clock)
    assert samples[0].unsupported == {
        Field.POWER: "not_supported",
        Field.TEMPERATURE: "function_not_found",
        **MIG_REFUSED,
    }
    assert samples[0].get(Entity(0), Field.POWER) is None
    assert samples[0].get(Entity(0), Field.MEMORY_USED) is not None


async def warm_sampler(source: NvmlSource, clock: ManualClock, deadline: float = 5.0) -> Sampler:
    """A sampler that has run two cycles, so every GPU has activity."""
    sampler = Sampler(source, interval=1.0, discovery_interval=3600.0, deadline=deadline)
    await sampler.run_once()
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.source_up and not snapshot.stale_gpus
    return sampler


@pytest.mark.parametrize(
    ("error", "reason"), [("NVML_ERROR_GPU_IS_LOST", "gpu_lost"), ("NVML_ERROR_UNKNOWN", "unknown")]
)
async def test_nvml_gpu_lost_mid_run_isolates_that_gpu(
    fake: ModuleType, source: NvmlSource, clock: ManualClock, error: str, reason: str
) -> None:
    """A GPU that falls off the bus (or fails) is marked stale and counted with its reason; the others report on."""
    sampler = await warm_sampler(source, clock)
    fake.fail_gpu(2, getattr(fake, error))
    for cycle in (1, 2):
        clock.now += 1.0
        snapshot = await sampler.run_once()
        assert snapshot.stale_gpus == {2}
        assert not snapshot.source_up
        assert 2 not in snapshot.samples
        assert snapshot.errors[("sample", reason)] == cycle
        assert sorted(snapshot.samples) == [0, 1, 3, 4, 5, 6, 7]
        assert snapshot.samples[3].get(Entity(3, 1), Field.GR_ENGINE_ACTIVE) is not None
    assert await sampler._discover()  # discovery keeps the lost GPU, so it stays visible as stale
    assert sampler._topology is not None and sampler._topology.gpu(2) is not None


async def test_nvml_hung_call_marks_only_that_gpu_stale(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """A call that never returns makes its GPU stale after the deadline, with no new threads; released, it recovers."""
    sampler = await warm_sampler(source, clock, deadline=0.5)
    release = fake.hang_gpu(5)
    try:
        await check_hung_gpu(fake, sampler, clock, release)
    finally:
        release.set()


async def check_hung_gpu(fake: ModuleType, sampler: Sampler, clock: ManualClock, release: Event) -> None:
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.stale_gpus == {5}
    assert snapshot.errors[("sample", "deadline")] == 1
    assert len(snapshot.samples) == 7
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.stale_gpus == {5} and snapshot.errors[("sample", "hung")] == 1
    assert await sampler._discover()  # discovery skips the busy GPU instead of waiting on it
    assert sampler._topology is not None and sampler._topology.gpu(5) is not None
    assert fake.driver().waiting[5] == 1  # one blocked thread: no later call was made on GPU 5
    release.set()
    for _ in range(50):
        clock.now += 1.0
        snapshot = await sampler.run_once()
        if 5 in snapshot.samples:
            break
    assert 5 in snapshot.samples and not snapshot.stale_gpus


NEW_LAYOUT = """
gpus:
  - board: h100-80gb
    instances:
      - {profile: 2g.20gb, gi: 7, activity: 0.3, memory: 0.2}
      - {profile: 2g.20gb, gi: 8, activity: idle}
      - {profile: 3g.40gb, gi: 9, activity: 0.6, memory: 0.5}
"""


async def test_nvml_repartition_mid_run_shows_new_layout(
    fake: ModuleType, source: NvmlSource, dgx: Simulator, clock: ManualClock
) -> None:
    """After `nvidia-smi mig` re-partitions a GPU, the next cycle re-discovers it and reports the new instances."""
    sampler = await warm_sampler(source, clock)
    dgx.repartition(1, parse(NEW_LAYOUT).gpus[0].instances)
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.errors == {} and snapshot.topology_changes == 1
    assert snapshot.topology.gpu(1) == dgx.topology().gpu(1)
    assert [i.gi for i in snapshot.topology.gpus[1].instances] == [7, 8, 9]
    assert snapshot.samples[1].get(Entity(1, 9), Field.MEMORY_USED) == dgx.gi_memory_used(1, 9, clock.now)
    assert snapshot.stale_gpus == frozenset()
    clock.now += 1.0
    snapshot = await sampler.run_once()
    activity = snapshot.samples[1].get(Entity(1, 9), Field.GR_ENGINE_ACTIVE)
    assert activity == pytest.approx(0.6, abs=ACTIVITY_TOLERANCE)
    entities = sum(1 + len(i.compute_instances) for _, i in snapshot.topology.iter_instances()) + 1
    assert len(fake.driver().samples) == 2 * entities  # the old instances' GPM buffers were freed


async def test_nvml_repartition_reusing_ids_is_still_detected(
    fake: ModuleType, source: NvmlSource, dgx: Simulator, clock: ManualClock
) -> None:
    """A layout whose MIG slots now hold other instances is caught through the handles, not read through them."""
    sampler = await warm_sampler(source, clock)
    layout = parse("gpus:\n  - instances:\n      - {profile: 7g.80gb, gi: 3, activity: 0.4}\n")
    dgx.repartition(0, layout.gpus[0].instances)
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert [(i.gi, i.profile) for i in snapshot.topology.gpus[0].instances] == [(3, "7g.80gb")]
    assert snapshot.topology == dgx.topology()


@pytest.mark.parametrize("stale_handle", ["NVML_ERROR_NOT_FOUND", "NVML_ERROR_INVALID_ARGUMENT"])
async def test_nvml_destroyed_instance_triggers_rediscovery(
    fake: ModuleType, source: NvmlSource, dgx: Simulator, clock: ManualClock, stale_handle: str
) -> None:
    """A destroyed GPU instance, whose MIG handle now fails (NotFound or InvalidArgument), goes in the next cycle."""
    fake.driver().empty_slot_error = getattr(fake, stale_handle)
    sampler = await warm_sampler(source, clock)
    dgx.repartition(1, dgx.scenario.gpus[1].instances[1:])  # nvidia-smi mig -dci -dgi on GI 1 (slot 0)
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.errors == {} and snapshot.topology_changes == 1
    assert [i.gi for i in snapshot.topology.gpus[1].instances] == [2]
    assert snapshot.topology == dgx.topology()
    assert snapshot.stale_gpus == frozenset()


def test_nvml_without_pynvml_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without nvidia-ml-py installed, opening the NVML source fails with one line naming the package."""
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    with pytest.raises(SourceUnavailableError, match=r"^NVML could not be loaded: the nvidia-ml-py package"):
        open_source("nvml", SourceOptions())


def test_nvml_init_failure_is_a_one_line_error() -> None:
    """When nvmlInit cannot find the driver library the source reports it in one line."""
    module = load_fake_pynvml()
    with pytest.raises(SourceUnavailableError, match=r"NVML could not be loaded: nvmlInit failed: .*Library Not Found"):
        NvmlSource(module)


async def test_nvml_instances_added_are_seen_within_one_cycle(
    fake: ModuleType, source: NvmlSource, dgx: Simulator, clock: ManualClock
) -> None:
    """A re-partition that only adds instances (an empty MIG slot filled) shows up in the next cycle."""
    full = dgx.scenario.gpus[1].instances
    dgx.repartition(1, full[:1])  # one 3g.40gb; the second half of GPU 1 is free
    sampler = await warm_sampler(source, clock)
    assert sampler.snapshot is not None and len(sampler.snapshot.topology.gpus[1].instances) == 1
    dgx.repartition(1, full)  # `nvidia-smi mig -cgi 9 -C`: adds the second 3g.40gb, nothing is destroyed
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.topology.gpu(1) == dgx.topology().gpu(1)
    assert [i.profile for i in snapshot.topology.gpus[1].instances] == ["3g.40gb", "3g.40gb"]
    assert snapshot.topology_changes == 1 and snapshot.errors == {}
    assert not snapshot.stale_gpus and snapshot.source_up


async def test_nvml_parent_memory_refused_mid_run_keeps_the_gpu(
    fake: ModuleType, source: NvmlSource, dgx: Simulator, clock: ManualClock
) -> None:
    """When the parent's memory read starts failing with NoPermission, the GPU keeps every other value."""
    sampler = await warm_sampler(source, clock)
    fake.driver().privileged = False  # from now on the parent's memory query is refused on MIG GPUs
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.source_up and not snapshot.stale_gpus and snapshot.errors == {}
    sample = snapshot.samples[1]
    assert sample.get(Entity(1), Field.MEMORY_USED) == dgx.gpu_memory_used(1, clock.now)  # the instances' sum
    assert sample.get(Entity(1), Field.POWER) is not None
    assert sample.get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) == pytest.approx(0.7, abs=ACTIVITY_TOLERANCE)


async def test_nvml_every_memory_read_refused_leaves_memory_absent_with_reason(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """A driver refusing all memory reads leaves memory series absent (reason no_permission); the GPU reports on."""
    sampler = await warm_sampler(source, clock)
    fake.driver().refused["nvmlDeviceGetMemoryInfo"] = fake.NVML_ERROR_NO_PERMISSION
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.source_up and not snapshot.stale_gpus and snapshot.errors == {}
    for index in (1, 7):
        sample = snapshot.samples[index]
        assert sample.unsupported[Field.MEMORY_USED] == "no_permission"
        assert all(Field.MEMORY_USED not in v for v in sample.values.values())
        assert sample.get(Entity(index), Field.TEMPERATURE) is not None
    assert snapshot.samples[7].get(Entity(7), Field.GR_ENGINE_ACTIVE) == pytest.approx(0.65, abs=ACTIVITY_TOLERANCE)
    text = Renderer((native_families, exporter_families)).render(snapshot).decode()
    assert 'mig_exporter_field_supported{field="memory_used",gpu="7",reason="no_permission"} 0.0' in text


H100_DRIVER_TOTAL_MIB = 81_559  # what the driver reports for an H100 80GB HBM3; the catalog says 80 GiB


async def test_nvml_memory_total_comes_from_the_driver(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """The GPU's memory total is the driver's figure, not the board catalog's nominal size."""
    fake.driver().memory_total_mib.update(dict.fromkeys(range(8), H100_DRIVER_TOTAL_MIB))
    topology, samples = await two_cycles(source, clock)
    for gpu in topology.gpus:
        assert samples[gpu.index].get(Entity(gpu.index), Field.MEMORY_TOTAL) == H100_DRIVER_TOTAL_MIB * 2**20


async def test_nvml_unprivileged_never_publishes_the_catalog_size_as_the_gpu_total(
    fake: ModuleType, source: NvmlSource, clock: ManualClock
) -> None:
    """Unprivileged, a MIG GPU's total is the driver's when it was read once, else absent: never the catalog's."""
    fake.driver().memory_total_mib.update(dict.fromkeys(range(8), H100_DRIVER_TOTAL_MIB))
    fake.driver().privileged = False
    topology, samples = await two_cycles(source, clock)
    assert samples[1].get(Entity(1), Field.MEMORY_TOTAL) is None  # the driver keeps it for privileged users
    assert samples[1].get(Entity(1, 1), Field.MEMORY_TOTAL) is not None  # instance totals are unprivileged
    assert samples[7].get(Entity(7), Field.MEMORY_TOTAL) == H100_DRIVER_TOTAL_MIB * 2**20  # MIG off: readable
    fake.driver().privileged = True
    await source.discover()  # read once with privileges ...
    fake.driver().privileged = False
    topology = await source.discover()  # ... and remembered when refused again
    sample = await source.sample(topology.gpus[1])
    assert sample.get(Entity(1), Field.MEMORY_TOTAL) == H100_DRIVER_TOTAL_MIB * 2**20


@pytest.mark.parametrize(
    ("function", "fields"),
    [
        ("nvmlDeviceGetClockInfo", (Field.SM_CLOCK, Field.MEMORY_CLOCK)),
        ("nvmlDeviceGetTotalEnergyConsumption", (Field.ENERGY,)),
        ("nvmlDeviceGetPcieReplayCounter", (Field.PCIE_REPLAYS,)),
        ("nvmlDeviceGetEncoderUtilization", (Field.ENCODER_UTIL,)),
        ("nvmlDeviceGetDecoderUtilization", (Field.DECODER_UTIL,)),
        ("nvmlDeviceGetFieldValues", (Field.MEMORY_TEMPERATURE, Field.NVLINK_RATE)),
        ("nvmlDeviceGetRemappedRows", REMAPPED),
        ("nvmlDeviceGetUtilizationRates", (Field.GPU_UTIL, Field.MEMORY_COPY_UTIL)),
    ],
)
async def test_nvml_refused_health_reads_are_absent_with_reason(
    fake: ModuleType, source: NvmlSource, clock: ManualClock, function: str, fields: tuple[Field, ...]
) -> None:
    """A GPU-wide read the driver refuses leaves only its fields absent, each with the reason; the rest stay."""
    fake.driver().refused[function] = fake.NVML_ERROR_NO_PERMISSION
    _, samples = await two_cycles(source, clock)
    whole = samples[7]  # MIG disabled: every one of these reads is tried
    assert whole.unsupported == dict.fromkeys(fields, "no_permission")
    assert not set(fields) & set(whole.values[Entity(7)])
    assert Field.POWER in whole.values[Entity(7)] and Field.SM_ACTIVE in whole.values[Entity(7)]


async def test_nvml_field_value_with_its_own_error_drops_only_that_field(
    fake: ModuleType, source: NvmlSource, dgx: Simulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvmlDeviceGetFieldValues succeeds but one value carries its own nvmlReturn: that field alone is absent."""
    real = fake.nvmlDeviceGetFieldValues

    def no_nvlink(handle: object, ids: list[object]) -> object:
        values = real(handle, ids)
        for fv in values:
            if fv.fieldId != fake.NVML_FI_DEV_MEMORY_TEMP:
                fv.nvmlReturn = fake.NVML_ERROR_NOT_SUPPORTED  # a GPU without NVLink
        return values

    monkeypatch.setattr(fake, "nvmlDeviceGetFieldValues", no_nvlink)
    _, samples = await two_cycles(source, clock)
    whole = samples[7]
    assert whole.unsupported == {Field.NVLINK_RATE: "not_supported"}
    assert whole.get(Entity(7), Field.MEMORY_TEMPERATURE) == dgx.sample(7, clock.now).get(
        Entity(7), Field.MEMORY_TEMPERATURE
    )


# XID errors through NVML's event API


def wait_until(done: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll until `done()`; fail after `limit` seconds (the event thread runs on its own)."""
    ends = time.monotonic() + limit
    while not done():
        assert time.monotonic() < ends, "the XID events were not counted"
        time.sleep(0.01)


def render(snapshot: Snapshot) -> str:
    return Renderer((native_families, exporter_families)).render(snapshot).decode()


async def test_xid_events_are_counted_on_the_instance_that_raised_them(fake: ModuleType, source: NvmlSource) -> None:
    """An XID from a compute instance, one from a GPU instance and a GPU-wide one each land on their own series."""
    sampler = Sampler(source, interval=1.0, discovery_interval=3600.0, deadline=5.0)
    await sampler.run_once()
    fake.raise_xid(4, 43, gi=1, ci=2)
    fake.raise_xid(4, 43, gi=1, ci=2)
    fake.raise_xid(1, 94, gi=2)
    fake.raise_xid(0, 48)
    wait_until(lambda: sum(source.xid_errors().counts.values()) == 4)
    snapshot = await sampler.run_once()
    assert snapshot.xids.counts == {XidKey(4, 43, 1, 2): 2, XidKey(1, 94, 2, None): 1, XidKey(0, 48, None, None): 1}
    assert snapshot.xids.last == {4: 43, 1: 94, 0: 48}
    text = render(snapshot)
    assert 'mig_gpu_xid_errors_total{ci="2",gi="1",gpu="4",xid="43"} 2.0' in text
    assert 'mig_gpu_xid_errors_total{ci="",gi="2",gpu="1",xid="94"} 1.0' in text
    assert 'mig_gpu_xid_errors_total{ci="",gi="",gpu="0",xid="48"} 1.0' in text
    assert snapshot.samples[4].get(Entity(4), Field.XID_ERRORS) == 2
    assert 'mig_exporter_field_supported{field="xid_errors",gpu="4",reason=""} 1.0' in text


async def test_xid_of_a_gpu_that_then_fails_stays_visible(fake: ModuleType, source: NvmlSource) -> None:
    """An XID 79 on a GPU whose reads then fail (fallen off the bus) is still served while the GPU is stale."""
    sampler = Sampler(source, interval=1.0, discovery_interval=3600.0, deadline=5.0)
    await sampler.run_once()
    fake.raise_xid(2, 79)
    wait_until(lambda: bool(source.xid_errors().counts))
    fake.fail_gpu(2)
    snapshot = await sampler.run_once()
    assert 2 in snapshot.stale_gpus
    assert 'mig_gpu_xid_errors_total{ci="",gi="",gpu="2",xid="79"} 1.0' in render(snapshot)


async def test_xid_counts_survive_a_repartition(fake: ModuleType, source: NvmlSource, dgx: Simulator) -> None:
    """A GPU instance destroyed after an XID keeps its series and count; the new layout is served beside it."""
    sampler = Sampler(source, interval=1.0, discovery_interval=3600.0, deadline=5.0)
    await sampler.run_once()
    fake.raise_xid(1, 63, gi=2)
    wait_until(lambda: bool(source.xid_errors().counts))
    dgx.repartition(1, dgx.scenario.gpus[1].instances[:1])
    await sampler.run_once()
    snapshot = await sampler.run_once()
    assert snapshot.topology.gpus[1].instance(2) is None
    assert snapshot.xids.counts == {XidKey(1, 63, 2, None): 1}


@pytest.mark.parametrize(
    ("refused", "reason"),
    [
        ("nvmlDeviceRegisterEvents", "not_supported"),
        ("nvmlEventSetCreate", "not_supported"),
        ("nvmlDeviceGetSupportedEventTypes", "no_permission"),
    ],
)
async def test_refused_xid_events_leave_the_gpu_data_intact(
    fake: ModuleType, source: NvmlSource, clock: ManualClock, refused: str, reason: str
) -> None:
    """A driver that refuses the event API: XIDs absent with the reason, every other value still read."""
    code = fake.NVML_ERROR_NOT_SUPPORTED if reason == "not_supported" else fake.NVML_ERROR_NO_PERMISSION
    fake.driver().refused[refused] = code
    sampler = Sampler(source, interval=1.0, discovery_interval=3600.0, deadline=5.0)
    await sampler.run_once()
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.source_up and not snapshot.stale_gpus
    sample = snapshot.samples[1]
    assert sample.unsupported == {**MIG_REFUSED, Field.XID_ERRORS: reason}
    assert sample.get(Entity(1), Field.POWER) is not None
    assert sample.get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) is not None
    text = render(snapshot)
    assert f'mig_exporter_field_supported{{field="xid_errors",gpu="1",reason="{reason}"}} 0.0' in text
    assert "mig_gpu_xid_errors_total{" not in text


async def test_a_gpu_without_xid_events_is_reported_as_such(fake: ModuleType, source: NvmlSource) -> None:
    """A GPU whose supported event types lack XIDs is not registered, and says so."""
    fake.driver().event_types = fake.nvmlEventTypeSingleBitEccError
    topology = await source.discover()
    sample = await source.sample(topology.gpus[0])
    assert sample.unsupported[Field.XID_ERRORS] == "not_supported"
    assert Field.XID_ERRORS not in sample.values[Entity(0)]
    assert fake.driver().calls["nvmlDeviceRegisterEvents"] == 0


async def test_event_thread_stops_and_frees_its_set_on_close(fake: ModuleType, library: ModuleType) -> None:
    """Closing the source ends the event thread within one wait and frees the event set before nvmlShutdown."""
    src = NvmlSource(library)
    await src.discover()
    thread = src._events._thread
    assert thread is not None and thread.is_alive() and fake.driver().event_sets
    await src.close()
    assert not thread.is_alive()
    assert fake.driver().event_sets == {}
    assert fake.driver().calls["nvmlEventSetFree"] == 1
    assert fake.driver().initialized == 0


async def test_every_gpu_is_registered_once_across_discoveries(fake: ModuleType, source: NvmlSource) -> None:
    """Re-discovery does not register a GPU again, so each XID is counted once."""
    await source.discover()
    await source.discover()
    assert fake.driver().calls["nvmlDeviceRegisterEvents"] == 8
    fake.raise_xid(3, 31, gi=1, ci=0)
    wait_until(lambda: bool(source.xid_errors().counts))
    time.sleep(0.1)
    assert source.xid_errors().counts == {XidKey(3, 31, 1, 0): 1}


async def test_scenario_xids_arrive_through_the_event_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scenario's `xids:` entries reach the real nvidia-ml-py as events with the instance ids NVML gives."""
    from exporter.sources.synthetic.scenario import parse

    text = "gpus:\n  - instances: [{profile: 3g.40gb, gi: 1}, {profile: 3g.40gb, gi: 2}]\n"
    text += "xids:\n  - {gpu: 0, xid: 94, gi: 2, ci: 0}\n  - {gpu: 0, xid: 119}\n"
    fake = load_fake_pynvml()
    fake.install(Simulator(parse(text)))
    real = pytest.importorskip("pynvml")
    SimulatedLibrary(fake).attach(real, monkeypatch)
    src = NvmlSource(real)
    try:
        await src.discover()
        wait_until(lambda: sum(src.xid_errors().counts.values()) == 2)
        assert src.xid_errors().counts == {XidKey(0, 94, 2, 0): 1, XidKey(0, 119): 1}
    finally:
        await src.close()


async def test_a_failing_wait_pauses_and_the_thread_goes_on(fake: ModuleType, source: NvmlSource) -> None:
    """nvmlEventSetWait_v2 failing (not timing out) does not end the thread: later XIDs are still counted."""
    fake.driver().refused["nvmlEventSetWait_v2"] = fake.NVML_ERROR_UNKNOWN
    await source.discover()
    wait_until(lambda: fake.driver().calls["nvmlEventSetWait_v2"] >= 1)
    del fake.driver().refused["nvmlEventSetWait_v2"]
    fake.raise_xid(5, 64, gi=1)
    wait_until(lambda: bool(source.xid_errors().counts))
    assert source.xid_errors().counts == {XidKey(5, 64, 1, None): 1}


async def test_an_event_wait_stuck_in_the_driver_holds_neither_sampling_nor_shutdown(
    fake: ModuleType, library: ModuleType, clock: ManualClock
) -> None:
    """A wait that never returns: cycles go on, and close() gives up on the thread and keeps its set (not freed)."""
    release = fake.hang_event_wait()
    src = NvmlSource(library, clock=clock)
    sampler = Sampler(src, interval=1.0, discovery_interval=3600.0, deadline=5.0)
    try:
        await sampler.run_once()
        clock.now += 1.0
        snapshot = await sampler.run_once()
        assert snapshot.source_up and not snapshot.stale_gpus
        assert snapshot.samples[3].get(Entity(3), Field.XID_ERRORS) == 0
        await sampler.close()
        assert fake.driver().calls["nvmlEventSetFree"] == 0 and fake.driver().initialized == 0
    finally:
        release.set()
