"""Building the review from collected history, without Prometheus: what is packed and what is only noted."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.mig.catalog import board
from exporter.report.collect import GpuSeen, InstanceSeen, ShardHistory
from exporter.report.render_json import render_json
from exporter.report.review import ReviewBuilder
from exporter.report.rightsize import Policy, fit_thresholds
from exporter.report.stats import Grid, InstanceKey, Tally

GRID = Grid(0.0, 3000.0, 300.0)
H100 = board("h100-80gb")


def seen(where: tuple[str, str, str, str], start: int, level: float, present: bool = True) -> InstanceSeen:
    """An instance at (node, gpu, gi, profile) that ran at a steady `level` over the whole grid."""
    policy = Policy()
    tally = Tally(policy.idle_threshold, fit_thresholds(where[3], policy))
    tally.steps, tally.total, tally.peak = GRID.points, level * GRID.points, level
    tally.fits.update({n: GRID.points for n, limit in tally.thresholds.items() if level <= limit})
    tally.active[0] = GRID.points if level >= policy.idle_threshold else 0
    tally.quantiles.append((GRID.points, level))
    tally.memory_peak = 2e9
    return InstanceSeen(InstanceKey(*where), tally, start, 0.0, set(), present)


def test_report_review_packs_known_mig_gpus_and_notes_the_rest() -> None:
    """MIG-disabled, unknown-model and info-less GPUs are noted, not packed; vanished instances are listed apart."""
    gpus = {
        ("a", "0"): GpuSeen("a", "0", "NVIDIA H100 80GB HBM3", True, H100, True),
        ("a", "1"): GpuSeen("a", "1", "NVIDIA H100 80GB HBM3", True, H100, True),
        ("a", "2"): GpuSeen("a", "2", "NVIDIA H100 80GB HBM3", False, H100, True),
        ("a", "3"): GpuSeen("a", "3", "Mystery GPU", True, None, True),
    }
    instances = [
        seen(("a", "0", "1", "3g.40gb"), 0, 0.7),
        seen(("a", "0", "2", "3g.40gb"), 4, 0.0),
        seen(("a", "1", "1", "2g.20gb"), 0, 0.3),
        seen(("a", "1", "5", "4g.40gb"), 0, 0.5, present=False),  # re-partitioned away during the window
        seen(("a", "3", "1", "3g.20gb"), 0, 0.5),
        seen(("a", "9", "1", "1g.10gb"), 0, 0.5),  # no mig_gpu_info for GPU 9
    ]
    builder = ReviewBuilder(GRID, Policy())
    builder.add(ShardHistory(("a",), gpus, {i.key: i for i in instances}))
    review = builder.finish("http://p")
    assert [(i.key.gpu, i.key.gi, i.recommendation.action) for i in review.instances] == [
        ("0", "1", "keep"),
        ("0", "2", "reclaim"),
        ("1", "1", "resize"),
        ("3", "1", "keep"),
        ("9", "1", "keep"),
    ]
    (plan,) = review.nodes
    assert plan.gpus_today == ("0", "1")
    assert [sorted(p.profile.name for p, _ in gpu) for gpu in plan.recommended] == [["1g.10gb", "3g.40gb"]]
    assert review.gpus_today == 2 and review.gpus_recommended == 1
    assert review.gone == (InstanceKey("a", "1", "5", "4g.40gb"),)
    assert review.unplanned_gpus == (
        "a GPU 2 (NVIDIA H100 80GB HBM3): MIG disabled, not part of the review",
        "a GPU 3 (Mystery GPU): not in the MIG catalog, its instances are kept as-is",
        "a GPU 9: no mig_gpu_info at the end of the window, its instances are kept",
    )


def fleet(nodes: int) -> list[ShardHistory]:
    """One shard per node: two H100s, each split 3g + 3g, at activities that vary from node to node."""
    shards = []
    for n in range(nodes):
        node = f"gpu-{n:02d}:9401"
        gpus = {(node, g): GpuSeen(node, g, "NVIDIA H100 80GB HBM3", True, H100, True) for g in ("0", "1")}
        levels = [(n * 7 + k * 13) % 10 / 10 for k in range(4)]
        instances = [
            seen((node, g, gi, "3g.40gb"), 0 if gi == "1" else 4, levels[2 * int(g) + int(gi) - 1])
            for g in ("0", "1")
            for gi in ("1", "2")
        ]
        shards.append(ShardHistory((node,), gpus, {i.key: i for i in instances}))
    return shards


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_report_review_is_the_same_whatever_order_the_shards_arrive_in(seed: int) -> None:
    """A fleet whose shards arrive in any order gives the same review, to the byte."""
    reference = ReviewBuilder(GRID, Policy())
    for shard in fleet(6):
        reference.add(shard)
    shuffled = fleet(6)
    random.Random(seed).shuffle(shuffled)
    builder = ReviewBuilder(GRID, Policy())
    for shard in shuffled:
        builder.add(shard)
    assert render_json(builder.finish("http://p")) == render_json(reference.finish("http://p"))
