"""The synthetic source: the simulator served through the source protocol, at wall-clock time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from exporter.model import Gpu, GpuSample, Topology
from exporter.sources.base import Finding, GpuError, Level, TopologyChangedError
from exporter.sources.synthetic.simulator import Simulator


class SyntheticSource:
    """Reads a simulated node. `clock` is injectable so tests can evaluate any instant.

    The scenario's `faults` are applied here, timed from the source's creation on the monotonic clock.
    """

    name = "synthetic"

    def __init__(self, simulator: Simulator, clock: Callable[[], float] = time.time) -> None:
        self.simulator = simulator
        self._clock = clock
        self._started = time.monotonic()

    async def _inject_faults(self, gpu: int) -> None:
        for fault in self.simulator.scenario.faults:
            if fault.gpu != gpu or not fault.active(time.monotonic() - self._started):
                continue
            if fault.kind == "fail":
                raise GpuError(f"GPU {gpu}: injected fault ({fault.reason})", reason=fault.reason)
            ends = self._started + fault.after + fault.duration
            while time.monotonic() < ends:  # hang: return only once the fault is over
                await asyncio.sleep(min(ends - time.monotonic(), 3600.0))

    async def discover(self) -> Topology:
        return self.simulator.topology()

    async def sample(self, gpu: Gpu) -> GpuSample:
        await self._inject_faults(gpu.index)
        current = self.simulator.topology().gpu(gpu.index)
        if current is None or current.instances != gpu.instances:
            raise TopologyChangedError(f"GPU {gpu.index} was re-partitioned")
        return self.simulator.sample(gpu.index, self._clock())

    async def describe(self) -> list[Finding]:
        """The scenario simulated."""
        scenario = self.simulator.scenario
        gpus = len(self.simulator.topology().gpus)
        return [Finding("synthetic", "scenario", Level.OK, f"{scenario.name}: {gpus} simulated GPU{'s' * (gpus != 1)}")]

    async def close(self) -> None:
        return None
