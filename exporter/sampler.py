"""The sampling loop: discovery, per-GPU sampling under deadlines, snapshot publication.

One task runs the loop. Each GPU is sampled in its own task with a deadline, so one
failing or hung GPU marks only that GPU stale. A hung call is never started twice: while
the previous call for a GPU is still running, that GPU stays stale and no new call is made,
so a hung driver cannot pile up threads.

A source that notices a changed layout (TopologyChangedError) is routine, not an error: the
sampler discovers again at once and samples that GPU again in the same cycle. What a discovery
finds changed is counted as topology changes; only a GPU that still fails after that counts
as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from exporter.failurelog import FailureLog
from exporter.model import NO_XIDS, Gpu, GpuSample, Snapshot, Topology
from exporter.sources.base import GpuError, Source, TopologyChangedError, XidSource

log = logging.getLogger(__name__)

# GPUs whose samples start in one turn of the event loop. A source that computes in the loop (the
# simulator: about 0.1 ms a GPU) would otherwise hold it for every GPU at once, 5 ms at 64 GPUs, with
# requests waiting; sources that read through driver threads lose nothing to the stagger.
STARTS_PER_TURN = 4

Subscriber = Callable[[Snapshot], None]


class Sampler:
    """Publishes a fresh Snapshot every `interval` seconds to its subscribers."""

    def __init__(
        self,
        source: Source,
        interval: float = 1.0,
        discovery_interval: float = 60.0,
        deadline: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.interval = interval
        self.discovery_interval = discovery_interval
        self.deadline = deadline if deadline is not None else interval
        self._clock = clock
        self._topology: Topology | None = None
        self._discovered_at = float("-inf")
        self._inflight: dict[int, asyncio.Task[GpuSample]] = {}
        self._discovery: asyncio.Task[Topology] | None = None
        self._errors: Counter[tuple[str, str]] = Counter()
        self._topology_changes = 0
        self.snapshot: Snapshot | None = None
        self.subscribers: list[Subscriber] = []
        self.failures = FailureLog(log)  # one line when a GPU starts failing, a summary while it does, one on recovery

    def _count(self, stage: str, reason: str) -> None:
        self._errors[(stage, reason)] += 1

    def _count_failure(self, stage: str, what: str, exc: BaseException) -> None:
        """Count a failed call by its reason: a GpuError names one; anything else is a source bug."""
        if isinstance(exc, GpuError):
            self.failures.failed(what, f"failed: {exc}")
            self._count(stage, exc.reason)
        else:  # a source bug must not stop the exporter
            self.failures.failed(what, f"raised {type(exc).__name__}: {exc}", exc, level=logging.ERROR)
            self._count(stage, "exception")

    async def _discover(self) -> bool:
        """Run discovery; on failure keep the previous topology and return False.

        Like a hung sample, a discovery still running past its deadline is not started again until it
        returns, so a hung driver call cannot pile up threads. When it does return, its outcome is used:
        a node whose discovery always takes a little longer than the deadline still gets its topology.
        """
        task = self._discovery
        if task is not None and not task.done():
            self.failures.failed("discovery", "the previous call has still not returned")
            self._count("discover", "hung")
            return False
        if task is None:
            task = self._discovery = asyncio.create_task(self.source.discover())
            await asyncio.wait({task}, timeout=self.deadline)
            if not task.done():
                self.failures.failed("discovery", f"passed its {self.deadline:g}s deadline")
                self._count("discover", "deadline")
                task.add_done_callback(_discard_result)
                return False
        self._discovery = None
        exc = task.exception()
        if exc is not None:
            self._count_failure("discover", "discovery", exc)
            return False
        topology = task.result()
        if self._topology is not None:
            self._topology_changes += _changed_gpus(self._topology, topology)
        self._topology = topology
        self._discovered_at = time.monotonic()
        self.failures.recovered("discovery")
        return True

    async def _sample_gpus(self, gpus: list[Gpu]) -> tuple[dict[int, GpuSample], set[int], set[int]]:
        """Sample GPUs concurrently; return samples, failed GPUs, and GPUs whose layout changed."""
        samples: dict[int, GpuSample] = {}
        failed: set[int] = set()
        changed: set[int] = set()
        started: dict[int, asyncio.Task[GpuSample]] = {}
        for i, gpu in enumerate(gpus):
            if i and i % STARTS_PER_TURN == 0:
                await asyncio.sleep(0)  # let the loop run the samples started so far, and serve requests
            previous = self._inflight.get(gpu.index)
            if previous is not None and not previous.done():
                self.failures.failed(f"sampling GPU {gpu.index}", "the previous call has still not returned")
                self._count("sample", "hung")
                failed.add(gpu.index)
                continue
            started[gpu.index] = self._inflight[gpu.index] = asyncio.create_task(self.source.sample(gpu))
        if started:
            await asyncio.wait(started.values(), timeout=self.deadline)
        for index, task in started.items():
            if not task.done():
                self.failures.failed(f"sampling GPU {index}", f"passed its {self.deadline:g}s deadline")
                self._count("sample", "deadline")
                failed.add(index)
                task.add_done_callback(_discard_result)
                continue
            del self._inflight[index]
            exc = task.exception()
            if exc is None:
                samples[index] = task.result()
                self.failures.recovered(f"sampling GPU {index}")
                continue
            failed.add(index)
            if isinstance(exc, TopologyChangedError):
                log.debug("GPU %d changed: %s", index, exc)
                changed.add(index)
            else:
                self._count_failure("sample", f"sampling GPU {index}", exc)
        return samples, failed, changed

    async def run_once(self) -> Snapshot:
        """One cycle: discover if due, sample every GPU, publish and return the snapshot."""
        started = time.monotonic()
        discovery_ok = True
        if self._topology is None or started - self._discovered_at >= self.discovery_interval:
            discovery_ok = await self._discover()
        topology = self._topology or Topology()
        samples, failed, changed = await self._sample_gpus(list(topology.gpus))
        if changed and await self._discover():
            # The layout changed under us: publish the new one now, not one interval later.
            topology = self._topology or Topology()
            retry = [g for g in topology.gpus if g.index in changed]
            again, failed_again, changed_again = await self._sample_gpus(retry)
            for index in sorted(changed_again):  # a fresh discovery should have settled it: now it is an error
                log.warning("sampling GPU %d failed right after a new discovery: its layout keeps changing", index)
                self._count("sample", "not_found")
            samples.update(again)
            failed = (failed - changed) | failed_again | {i for i in changed if topology.gpu(i) is None}
        snapshot = Snapshot(
            source=self.source.name,
            topology=topology,
            samples=samples,
            timestamp=self._clock(),
            duration=time.monotonic() - started,
            source_up=discovery_ok and self._topology is not None and not failed,
            errors=dict(self._errors),
            stale_gpus=frozenset(i for i in failed if topology.gpu(i) is not None),
            topology_changes=self._topology_changes,
            xids=self.source.xid_errors() if isinstance(self.source, XidSource) else NO_XIDS,
        )
        self.publish(snapshot)
        return snapshot

    def publish(self, snapshot: Snapshot) -> None:
        """Make `snapshot` current and hand it to every subscriber."""
        self.snapshot = snapshot
        for subscriber in self.subscribers:
            subscriber(snapshot)

    async def run(self) -> None:
        """Sample every `interval` seconds until cancelled."""
        next_tick = time.monotonic()
        while True:
            try:
                await self.run_once()
                self.failures.recovered("sampling cycle")
            except Exception as exc:  # the loop must survive anything a cycle throws
                self.failures.failed("sampling cycle", f"raised {type(exc).__name__}: {exc}", exc, level=logging.ERROR)
                self._count("cycle", "exception")
            next_tick += self.interval
            now = time.monotonic()
            next_tick = max(next_tick, now)
            await asyncio.sleep(next_tick - now)

    async def close(self) -> None:
        """Cancel calls still in flight and close the source."""
        tasks: list[asyncio.Task[Any]] = [*self._inflight.values(), *([self._discovery] if self._discovery else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 0.1)
        self._inflight.clear()
        self._discovery = None
        await self.source.close()


def _changed_gpus(before: Topology, after: Topology) -> int:
    """How many GPUs appeared, disappeared or changed their layout between two discoveries."""
    old = {g.index: g for g in before.gpus}
    new = {g.index: g for g in after.gpus}
    return sum(1 for index in old.keys() | new.keys() if old.get(index) != new.get(index))


def _discard_result(task: asyncio.Task[Any]) -> None:
    """Retrieve a late task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
