"""The synthetic source: the simulator served through the source protocol, at wall-clock time."""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.model import Gpu, GpuSample, Topology
from exporter.sources.base import TopologyChangedError
from exporter.sources.synthetic.simulator import Simulator


class SyntheticSource:
    """Reads a simulated node. `clock` is injectable so tests can evaluate any instant."""

    name = "synthetic"

    def __init__(self, simulator: Simulator, clock: Callable[[], float] = time.time) -> None:
        self.simulator = simulator
        self._clock = clock

    async def discover(self) -> Topology:
        return self.simulator.topology()

    async def sample(self, gpu: Gpu) -> GpuSample:
        current = self.simulator.topology().gpu(gpu.index)
        if current is None or current.instances != gpu.instances:
            raise TopologyChangedError(f"GPU {gpu.index} was re-partitioned")
        return self.simulator.sample(gpu.index, self._clock())

    async def close(self) -> None:
        return None
