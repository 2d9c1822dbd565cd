"""Deterministic snapshots of synthetic scenarios at a fixed instant."""

from __future__ import annotations

import asyncio
import dataclasses

from exporter.model import Snapshot
from exporter.sampler import Sampler
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource

FIXED_TIME = 1_790_000_000.0


def fixed_snapshot(scenario: str = "dgx-h100", t: float = FIXED_TIME) -> Snapshot:
    """One sampling cycle of `scenario` at time t, with a zero duration so output is reproducible."""
    sampler = Sampler(SyntheticSource(Simulator(load(scenario)), clock=lambda: t), clock=lambda: t)
    snapshot = asyncio.run(sampler.run_once())
    return dataclasses.replace(snapshot, duration=0.0)


def snapshot_at(sim: Simulator, t: float) -> Snapshot:
    """What the synthetic source would have published at time t."""
    topology = sim.topology()
    return Snapshot(
        source="synthetic",
        topology=topology,
        samples={g.index: sim.sample(g.index, t) for g in topology.gpus},
        timestamp=t,
        duration=0.01,
        source_up=True,
        errors={},
    )
