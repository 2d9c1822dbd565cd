"""The sampling loop: deadlines, per-GPU isolation, error counting, re-discovery."""

from __future__ import annotations

import asyncio

import pytest

from exporter.model import Entity, Field, Gpu, GpuSample, Topology
from exporter.sampler import STARTS_PER_TURN, Sampler
from exporter.sources.base import GpuError, TopologyChangedError
from exporter.sources.synthetic.scenario import parse
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.faults import FaultySource

T0 = 1_790_000_000.0


def make(sim: Simulator, **kwargs: float) -> tuple[FaultySource, Sampler]:
    source = FaultySource(SyntheticSource(sim, clock=lambda: T0))
    return source, Sampler(source, clock=lambda: T0, **kwargs)


async def test_first_cycle_publishes_every_gpu(dgx: Simulator) -> None:
    """A healthy cycle samples all GPUs, reports the source up and notifies subscribers."""
    _, sampler = make(dgx)
    seen = []
    sampler.subscribers.append(seen.append)
    snapshot = await sampler.run_once()
    assert seen == [snapshot] and sampler.snapshot is snapshot
    assert sorted(snapshot.samples) == list(range(8))
    assert snapshot.source_up and not snapshot.stale_gpus and snapshot.errors == {}
    assert snapshot.timestamp == T0
    assert snapshot.samples[1].get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) == 0.7


async def test_hung_gpu_is_stale_others_report_and_it_is_not_called_again(dgx: Simulator) -> None:
    """A hung call marks only its GPU stale within the deadline and is not started twice."""
    source, sampler = make(dgx, deadline=0.2)
    source.hang.add(3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    first = await sampler.run_once()
    assert loop.time() - start < 1.0
    assert first.stale_gpus == {3} and not first.source_up
    assert sorted(first.samples) == [0, 1, 2, 4, 5, 6, 7]
    assert first.topology.gpu(3) is not None  # identity stays, values go
    second = await sampler.run_once()
    assert source.sample_calls[3] == 1
    assert second.errors == {("sample", "deadline"): 1, ("sample", "hung"): 1}
    source.hang.clear()
    await sampler.close()


async def test_gpu_error_is_counted_by_reason_and_isolated(dgx: Simulator) -> None:
    """A GpuError for one GPU is counted with its reason; the other GPUs keep their data."""
    source, sampler = make(dgx)
    source.raise_for[2] = lambda: GpuError("GPU is lost", reason="gpu_lost")
    snapshot = await sampler.run_once()
    assert snapshot.stale_gpus == {2}
    assert snapshot.errors == {("sample", "gpu_lost"): 1}
    assert 2 not in snapshot.samples and 1 in snapshot.samples
    del source.raise_for[2]
    recovered = await sampler.run_once()
    assert recovered.source_up and 2 in recovered.samples


async def test_unexpected_exception_in_source_does_not_escape(dgx: Simulator) -> None:
    """A bug in a source (any exception) becomes an error count, not a crash."""
    source, sampler = make(dgx)
    source.raise_for[0] = lambda: ZeroDivisionError("bug")
    snapshot = await sampler.run_once()
    assert snapshot.errors == {("sample", "exception"): 1}
    assert snapshot.stale_gpus == {0}


async def test_repartition_is_published_in_the_same_cycle(demo: Simulator) -> None:
    """When a GPU's layout changes, old instances vanish and new ones appear at once."""
    source, sampler = make(demo, discovery_interval=3600)
    await sampler.run_once()
    demo.repartition(0, parse("gpus: [{instances: [{profile: 7g.80gb, gi: 9, activity: 0.25}]}]").gpus[0].instances)
    snapshot = await sampler.run_once()
    assert [i.gi for i in snapshot.topology.gpus[0].instances] == [9]
    assert snapshot.samples[0].get(Entity(0, 9), Field.GR_ENGINE_ACTIVE) == 0.25
    assert snapshot.source_up and not snapshot.stale_gpus
    assert snapshot.errors == {}  # a re-partition is routine: counted as a topology change, not an error
    assert snapshot.topology_changes == 1
    assert source.discover_calls == 2


async def test_failed_discovery_keeps_the_previous_topology(dgx: Simulator) -> None:
    """Discovery errors are counted; the last known layout keeps being sampled."""
    source, sampler = make(dgx, discovery_interval=0.05)
    await sampler.run_once()
    source.discover_error = lambda: GpuError("driver busy", reason="unknown")
    await asyncio.sleep(0.06)
    snapshot = await sampler.run_once()
    assert not snapshot.source_up
    assert snapshot.errors == {("discover", "unknown"): 1}
    assert len(snapshot.samples) == 8


async def test_discovery_failure_at_start_publishes_an_empty_down_snapshot(dgx: Simulator) -> None:
    """With no topology yet, the snapshot is empty and the source is down."""
    source, sampler = make(dgx)
    source.discover_error = lambda: RuntimeError("no driver")
    snapshot = await sampler.run_once()
    assert snapshot.topology.gpus == () and not snapshot.source_up
    assert snapshot.errors == {("discover", "exception"): 1}


async def test_loop_keeps_its_interval_and_stops_on_cancel(demo: Simulator) -> None:
    """run() samples about once per interval and closes cleanly when cancelled."""
    source, sampler = make(demo, interval=0.05)
    task = asyncio.create_task(sampler.run())
    await asyncio.sleep(0.33)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sampler.close()
    assert 4 <= source.sample_calls[0] <= 9
    assert source.closed


class SlowDiscovery:
    """A source whose discovery always takes longer than the sampler's deadline."""

    def __init__(self, inner: SyntheticSource, delay: float) -> None:
        self.inner, self.delay, self.name, self.discover_calls = inner, delay, inner.name, 0

    async def discover(self) -> Topology:
        self.discover_calls += 1
        await asyncio.sleep(self.delay)
        return await self.inner.discover()

    async def sample(self, gpu: Gpu) -> GpuSample:
        return await self.inner.sample(gpu)

    async def close(self) -> None:
        await self.inner.close()


async def test_discovery_slower_than_the_deadline_is_used_once_it_returns(demo: Simulator) -> None:
    """A discovery that overruns its deadline is not restarted, and its late result becomes the topology."""
    source = SlowDiscovery(SyntheticSource(demo, clock=lambda: T0), delay=0.3)
    sampler = Sampler(source, deadline=0.2, clock=lambda: T0)
    first = await sampler.run_once()
    assert first.topology.gpus == () and not first.source_up
    await asyncio.sleep(0.2)
    second = await sampler.run_once()
    assert [g.index for g in second.topology.gpus] == [0] and 0 in second.samples
    assert second.source_up and source.discover_calls == 1


class AlwaysChanging:
    """A source whose every sample of GPU 0 reports a changed layout, even right after a discovery."""

    def __init__(self, inner: SyntheticSource) -> None:
        self.inner, self.name = inner, inner.name

    async def discover(self) -> Topology:
        return await self.inner.discover()

    async def sample(self, gpu: Gpu) -> GpuSample:
        if gpu.index == 0:
            raise TopologyChangedError("GPU 0 keeps changing")
        return await self.inner.sample(gpu)

    async def close(self) -> None:
        await self.inner.close()


async def test_layout_that_keeps_changing_after_rediscovery_is_an_error(demo: Simulator) -> None:
    """A GPU still reporting a change right after a fresh discovery is stale and counted as not_found."""
    sampler = Sampler(AlwaysChanging(SyntheticSource(demo, clock=lambda: T0)), clock=lambda: T0)
    snapshot = await sampler.run_once()
    assert snapshot.stale_gpus == {0} and not snapshot.source_up
    assert snapshot.errors == {("sample", "not_found"): 1}
    assert snapshot.topology_changes == 0  # the discoveries found nothing new


async def test_topology_changes_count_gpus_that_changed(dgx: Simulator) -> None:
    """Each GPU re-partitioned between two discoveries counts once; unchanged GPUs do not."""
    _, sampler = make(dgx, discovery_interval=0.0)
    first = await sampler.run_once()
    assert first.topology_changes == 0
    layout = parse("gpus: [{instances: [{profile: 7g.80gb, gi: 9, activity: 0.25}]}]").gpus[0].instances
    dgx.repartition(2, layout)
    dgx.repartition(5, layout)
    snapshot = await sampler.run_once()
    assert snapshot.topology_changes == 2 and snapshot.errors == {}
    assert (await sampler.run_once()).topology_changes == 2


async def test_a_source_computing_in_the_loop_lets_requests_in_between_its_gpus(dgx: Simulator) -> None:
    """Samples start a few GPUs per turn of the event loop: a simulated 64-GPU node never holds it for all."""
    source, sampler = make(dgx)
    turns = 0
    started_in_turn: list[int] = []
    original = source.sample

    async def sample(gpu: Gpu) -> GpuSample:
        started_in_turn.append(turns)
        return await original(gpu)

    source.sample = sample  # type: ignore[method-assign]

    async def count_turns() -> None:  # what a request handler gets: a run of the loop between others
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    snapshot = await sampler.run_once()
    counter.cancel()
    assert sorted(snapshot.samples) == list(range(8)) and len(started_in_turn) == 8
    per_turn = [started_in_turn.count(turn) for turn in sorted(set(started_in_turn))]
    assert STARTS_PER_TURN == 4 and per_turn == [4, 4]  # 8 GPUs over two turns, a request can come between
