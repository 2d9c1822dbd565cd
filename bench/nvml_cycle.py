"""Cost of one sampling cycle through the NVML source over the fake pynvml, against the synthetic source.

Both sources read the same simulated node (dgx-h100 by default) through the real Sampler; the
synthetic source is the same-run baseline, so the ratio says what the NVML code path (thread
per GPU, GPM buffers, per-metric checks) adds on top of producing the same snapshot. The fake
answers instantly, so this measures the exporter's own overhead, not a driver's latency; the
NVML call count per cycle is printed too (a real driver's cost scales with it).

    PYTHONPATH=$PWD python bench/nvml_cycle.py [--scenario dgx-h100] [--cycles 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.sampler import Sampler  # noqa: E402
from exporter.sources.base import Source  # noqa: E402
from exporter.sources.nvml import NvmlSource  # noqa: E402
from exporter.sources.synthetic.scenario import load  # noqa: E402
from exporter.sources.synthetic.simulator import Simulator  # noqa: E402
from exporter.sources.synthetic.source import SyntheticSource  # noqa: E402
from tests.support.nvml import load_fake_pynvml  # noqa: E402


class Clock:
    """Advances 1 s per cycle so every GPM window is valid, independent of how fast the cycle runs."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def time_cycles(
    source: Source, clock: Clock, cycles: int, warmed: Callable[[], None] = lambda: None
) -> list[float]:
    sampler = Sampler(source, interval=1.0, discovery_interval=1e9, deadline=10.0)
    for _ in range(2):  # discovery and the first GPM readings
        await sampler.run_once()
        clock.now += 1.0
    warmed()
    durations = []
    for _ in range(cycles):
        started = time.perf_counter()
        snapshot = await sampler.run_once()
        durations.append(time.perf_counter() - started)
        assert snapshot.source_up and not snapshot.stale_gpus
        clock.now += 1.0
    return durations


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="dgx-h100")
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()

    clock = Clock()
    baseline = await time_cycles(SyntheticSource(Simulator(load(args.scenario)), clock=clock), clock, args.cycles)

    clock = Clock()
    fake = load_fake_pynvml()
    driver = fake.install(Simulator(load(args.scenario)), clock=clock)
    nvml = NvmlSource(fake, clock=clock)
    measured = await time_cycles(nvml, clock, args.cycles, warmed=driver.calls.clear)
    calls = dict(driver.calls)
    await nvml.close()

    base, cost = statistics.median(baseline), statistics.median(measured)
    print(f"scenario {args.scenario}, {args.cycles} cycles, median per cycle")
    print(f"  synthetic source (baseline): {base * 1e3:.2f} ms")
    print(f"  nvml source over fake:       {cost * 1e3:.2f} ms  ({cost / base:.1f}x baseline)")
    print(f"  NVML calls per steady-state cycle: {sum(calls.values()) / args.cycles:.0f}")
    for name, count in sorted(calls.items(), key=lambda item: -item[1]):
        print(f"    {name}: {count / args.cycles:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
