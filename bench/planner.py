"""Fleet-packing time for 100 and 1,000 MIG instances, against a first-fit baseline in the same run.

Run from the repository root: `PYTHONPATH=. python bench/planner.py [--board h100-80gb] [--repeat 5]`.
The baseline is first-fit decreasing (each instance, largest first, goes on the first GPU where the
planner can still place it): the simple packer a user would write. Reported: the median time of each,
their ratio, and the GPUs each needs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence

from exporter.mig.catalog import DEFAULT_BOARD, Board, GiProfile, board
from exporter.mig.planner import pack, place


def first_fit(b: Board, demand: Sequence[GiProfile]) -> list[list[GiProfile]]:
    """First-fit decreasing with the single-GPU planner as the fit test."""
    gpus: list[list[GiProfile]] = []
    for p in sorted(demand, key=lambda p: (-p.memory_slices, -p.compute_slices)):
        for gpu in gpus:
            if place(b, [*gpu, p]).fits:
                gpu.append(p)
                break
        else:
            gpus.append([p])
    return gpus


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default=DEFAULT_BOARD)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    b = board(args.board)
    rnd = random.Random(0)
    start = time.perf_counter()
    pack(b, [rnd.choice(b.profiles) for _ in range(1000)])  # fills the per-layout cache later runs reuse
    print(f"first call, 1000 instances, cold caches: {(time.perf_counter() - start) * 1e3:.1f} ms")
    print(f"board {b.key}; median of {args.repeat} runs per demand; random demands over all {len(b.profiles)} profiles")
    print(f"{'instances':>9} {'seed':>4} {'pack ms':>8} {'ffd ms':>8} {'pack/ffd':>8} {'pack GPUs':>9} {'ffd GPUs':>8}")
    for n in (100, 1000):
        for seed in range(args.seeds):
            rnd = random.Random(seed)
            demand = [rnd.choice(b.profiles) for _ in range(n)]
            t_pack = median_seconds(lambda demand=demand: pack(b, demand), args.repeat)
            t_ffd = median_seconds(lambda demand=demand: first_fit(b, demand), args.repeat)
            gpus_pack, gpus_ffd = len(pack(b, demand)), len(first_fit(b, demand))
            print(
                f"{n:>9} {seed:>4} {t_pack * 1e3:>8.2f} {t_ffd * 1e3:>8.1f} {t_pack / t_ffd:>8.4f} "
                f"{gpus_pack:>9} {gpus_ffd:>8}"
            )


if __name__ == "__main__":
    main()
