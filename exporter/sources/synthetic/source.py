"""The synthetic source: the simulator served through the source protocol, at wall-clock time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from exporter.model import Entity, Field, Gpu, GpuSample, Topology, XidErrors
from exporter.sources.base import Finding, GpuError, Level, TopologyChangedError
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.xid import XidCounter


class SyntheticSource:
    """Reads a simulated node. `clock` is injectable so tests can evaluate any instant.

    The scenario's `faults` and `xids` are applied here, timed from the source's creation on the monotonic clock.
    """

    name = "synthetic"

    def __init__(self, simulator: Simulator, clock: Callable[[], float] = time.time) -> None:
        self.simulator = simulator
        self._clock = clock
        self._started = time.monotonic()
        self._xids = XidCounter()
        self._xids_raised = 0  # how many of the scenario's XIDs, in time order, were counted
        self._xid_plan = sorted(simulator.scenario.xids, key=lambda x: x.after)

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
        sample = self.simulator.sample(gpu.index, self._clock())
        self._raise_xids()
        values = dict(sample.values)
        values[Entity(gpu.index)] = {**values.get(Entity(gpu.index), {}), Field.XID_ERRORS: self._xids.total(gpu.index)}
        return GpuSample(gpu=sample.gpu, values=values, unsupported=sample.unsupported)

    def _raise_xids(self) -> None:
        """Count the scenario's XIDs whose time has come."""
        elapsed = time.monotonic() - self._started
        plan = self._xid_plan
        while self._xids_raised < len(plan) and plan[self._xids_raised].after <= elapsed:
            spec = plan[self._xids_raised]
            self._xids_raised += 1
            self._xids.record(spec.gpu, spec.xid, spec.gi, spec.ci)

    def xid_errors(self) -> XidErrors:
        """The scenario's XIDs counted so far."""
        self._raise_xids()
        return self._xids.snapshot()

    async def describe(self) -> list[Finding]:
        """The scenario simulated."""
        scenario = self.simulator.scenario
        gpus = len(self.simulator.topology().gpus)
        return [Finding("synthetic", "scenario", Level.OK, f"{scenario.name}: {gpus} simulated GPU{'s' * (gpus != 1)}")]

    async def close(self) -> None:
        return None
