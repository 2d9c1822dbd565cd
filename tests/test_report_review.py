"""Building the review from collected history, without Prometheus: what is packed and what is only noted."""

from __future__ import annotations

from exporter.mig.catalog import board
from exporter.report.collect import GpuSeen, History, InstanceSeen
from exporter.report.review import build_review
from exporter.report.rightsize import Policy
from exporter.report.stats import Accumulator, Grid, InstanceKey

GRID = Grid(0.0, 3000.0, 300.0)
H100 = board("h100-80gb")


def seen(where: tuple[str, str, str, str], start: int, level: float, present: bool = True) -> InstanceSeen:
    """An instance at (node, gpu, gi, profile) that ran at a steady `level` over the whole grid."""
    acc = Accumulator(GRID, idle_threshold=0.05)
    points = [(GRID.start + k * GRID.step, level) for k in range(GRID.points)]
    acc.add_activity_means(points)
    acc.add_activity_maxima(points)
    acc.add_memory_maxima([(0.0, 2e9)])
    return InstanceSeen(InstanceKey(*where), acc, start, 0.0, set(), present)


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
    history = History("http://p", GRID, "instance", "", gpus, {i.key: i for i in instances}, None)
    review = build_review(history, Policy())
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
