"""XID errors through DCGM's field 230, over the fake bindings and host engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.exposition.dcgm import builders_for
from exporter.exposition.render import Renderer
from exporter.model import Entity, Field, XidKey
from exporter.sampler import Sampler
from exporter.sources.dcgm.source import DcgmSource
from exporter.sources.synthetic.scenario import parse
from exporter.sources.synthetic.simulator import Simulator
from tests.support.clock import ManualClock
from tests.support.fake_dcgm import fake_bindings, hostengine

T0 = 1_790_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def engine(dgx: Simulator, clock: ManualClock) -> Iterator[Any]:
    """A fake host engine serving the dgx-h100 scenario, with DCGM GPU IDs that are not NVML's indexes."""
    module = hostengine()
    eng = module.FakeHostEngine(dgx, clock=clock, gpu_ids={i: (i + 3) % 8 for i in range(8)})
    module.install(eng)
    yield eng
    module.install(None)


@pytest.fixture
def sampler(engine: Any, clock: ManualClock) -> Sampler:
    src = DcgmSource(fake_bindings(), host="localhost:5555", interval=1.0, monotonic=clock)
    src.start()
    return Sampler(src, interval=1.0, discovery_interval=3600.0, deadline=5.0)


async def test_dcgm_xids_land_on_the_instance_dcgm_recorded_them_on(
    engine: Any, sampler: Sampler, clock: ManualClock
) -> None:
    """XIDs on a compute-instance, a GPU-instance and a GPU entity count on their NVML gpu/gi/ci."""
    await sampler.run_once()
    engine.raise_xid(4, 43, gi=1, ci=2)
    engine.raise_xid(1, 94, gi=2)
    engine.raise_xid(0, 48)
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.xids.counts == {XidKey(4, 43, 1, 2): 1, XidKey(1, 94, 2, None): 1, XidKey(0, 48): 1}
    assert snapshot.samples[4].get(Entity(4), Field.XID_ERRORS) == 1
    assert snapshot.samples[5].get(Entity(5), Field.XID_ERRORS) == 0
    text = Renderer(builders_for("dcgm")).render(snapshot).decode()
    assert 'mig_gpu_xid_errors_total{ci="2",gi="1",gpu="4",xid="43"} 1.0' in text
    assert 'mig_gpu_xid_errors_total{ci="",gi="",gpu="0",xid="48"} 1.0' in text
    last = [line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_XID_ERRORS{")]
    assert len(last) == 8  # once per GPU, never per instance
    assert any('gpu="1"' in line and line.endswith(" 94.0") for line in last)
    assert any('gpu="5"' in line and line.endswith(" 0.0") for line in last)


async def test_dcgm_xid_value_is_counted_once_and_a_new_one_again(
    engine: Any, sampler: Sampler, clock: ManualClock
) -> None:
    """The same latest value read on later cycles counts once; a new XID of the same code counts again."""
    await sampler.run_once()
    engine.raise_xid(3, 31, gi=1, ci=0)
    for _ in range(3):
        clock.now += 1.0
        snapshot = await sampler.run_once()
    assert snapshot.xids.counts == {XidKey(3, 31, 1, 0): 1}
    engine.raise_xid(3, 31, gi=1, ci=0)
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.xids.counts == {XidKey(3, 31, 1, 0): 2}


async def test_dcgm_xids_closer_than_one_interval_each_count(engine: Any, sampler: Sampler, clock: ManualClock) -> None:
    """Three XIDs on one compute instance between two cycles count three: every value since the last is read."""
    await sampler.run_once()
    for xid in (13, 13, 31):
        engine.raise_xid(5, xid, gi=1, ci=0)
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.xids.counts == {XidKey(5, 13, 1, 0): 2, XidKey(5, 31, 1, 0): 1}
    assert snapshot.xids.last[5] == 31


async def test_dcgm_xid_from_before_the_start_is_history(dgx: Simulator, clock: ManualClock) -> None:
    """An XID the host engine recorded before the exporter started is not counted."""
    module = hostengine()
    eng = module.FakeHostEngine(dgx, clock=clock)
    module.install(eng)
    try:
        eng.raise_xid(2, 79)  # recorded before the source exists
        time.sleep(0.002)
        src = DcgmSource(fake_bindings(), host="localhost:5555", interval=1.0, monotonic=clock)
        src.start()
        snapshot = await Sampler(src, interval=1.0).run_once()
        assert snapshot.xids.counts == {}
        await src.close()
    finally:
        module.install(None)


async def test_dcgm_refused_xid_watch_leaves_the_rest(engine: Any, sampler: Sampler, clock: ManualClock) -> None:
    """A host engine that refuses to watch field 230: XIDs absent with the reason, every other value read."""
    engine.unwatchable[230] = fake_bindings().structs.DCGM_ST_NOT_SUPPORTED
    await sampler.run_once()
    clock.now += 1.0
    snapshot = await sampler.run_once()
    assert snapshot.source_up and not snapshot.stale_gpus
    sample = snapshot.samples[1]
    mig_refused = (Field.GPU_UTIL, Field.MEMORY_COPY_UTIL)  # DCGM has no whole-GPU utilization with MIG on
    assert sample.unsupported == dict.fromkeys((*mig_refused, Field.XID_ERRORS), "not_supported")
    assert sample.get(Entity(1), Field.POWER) is not None
    assert sample.get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) is not None
    text = Renderer(builders_for("dcgm")).render(snapshot).decode()
    assert 'mig_exporter_field_supported{field="xid_errors",gpu="1",reason="not_supported"} 0.0' in text
    assert "DCGM_FI_DEV_XID_ERRORS{" not in text


async def test_dcgm_scenario_xids_are_counted(clock: ManualClock) -> None:
    """A scenario's `xids:` entries reach the DCGM source through field 230 on the right entities."""
    text = "gpus:\n  - instances: [{profile: 4g.40gb, gi: 1}, {profile: 3g.40gb, gi: 2}]\n"
    text += "xids:\n  - {gpu: 0, xid: 95, gi: 2, ci: 0}\n  - {gpu: 0, xid: 64, gi: 1}\n"
    module = hostengine()
    src = DcgmSource(fake_bindings(), host="localhost:5555", interval=1.0, monotonic=clock)
    module.install(module.FakeHostEngine(Simulator(parse(text)), clock=clock))
    try:
        src.start()
        sampler = Sampler(src, interval=1.0)
        await sampler.run_once()
        clock.now += 1.0
        snapshot = await sampler.run_once()
        assert snapshot.xids.counts == {XidKey(0, 95, 2, 0): 1, XidKey(0, 64, 1, None): 1}
        await src.close()
    finally:
        module.install(None)
