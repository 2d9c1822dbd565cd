"""XID errors through NVML's event API, over the fake pynvml and over the real nvidia-ml-py on the simulated library."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType

import pytest

from exporter.exposition.health import exporter_families
from exporter.exposition.native import native_families
from exporter.exposition.render import Renderer
from exporter.model import Entity, Field, Snapshot, XidKey
from exporter.sampler import Sampler
from exporter.sources.nvml import NvmlSource
from exporter.sources.synthetic.simulator import Simulator
from tests.support.clock import ManualClock
from tests.support.nvml import SimulatedLibrary, load_fake_pynvml

START = 1_700_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def fake(dgx: Simulator, clock: ManualClock) -> Iterator[ModuleType]:
    """A fake pynvml backed by the dgx-h100 simulator."""
    module = load_fake_pynvml()
    module.install(dgx, clock=clock)
    yield module
    module.release_all()


@pytest.fixture(params=["fake", "real"])
def library(request: pytest.FixtureRequest, fake: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The fake itself, or the real nvidia-ml-py over the simulated C library."""
    if request.param == "fake":
        return fake
    real = pytest.importorskip("pynvml")
    SimulatedLibrary(fake).attach(real, monkeypatch)
    return real


@pytest.fixture
async def source(library: ModuleType, clock: ManualClock) -> AsyncIterator[NvmlSource]:
    src = NvmlSource(library, clock=clock)
    yield src
    await src.close()


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
    mig_refused = (Field.REMAPPED_ROWS_CORRECTABLE, Field.REMAPPED_ROWS_UNCORRECTABLE, Field.ROW_REMAP_FAILURE)
    assert sample.unsupported == {**dict.fromkeys(mig_refused, "not_supported"), Field.XID_ERRORS: reason}
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
