"""Right-sizing: the profile each GPU instance should have, judged by its p95 demand and peak memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exporter.contract.thresholds import IDLE_RATIO
from exporter.mig.catalog import Board, GiProfile
from exporter.report.stats import Summary
from exporter.units import gib, percent

Action = Literal["keep", "resize", "reclaim"]


@dataclass(frozen=True, slots=True)
class Policy:
    """How generous right-sizing is."""

    idle_threshold: float = IDLE_RATIO  # activity below this counts as idle
    compute_headroom: float = 0.2  # demand is p95 activity x compute slices x (1 + this)
    memory_headroom: float = 0.1  # peak memory used x (1 + this) must fit


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What to do with one instance: keep it, resize it to `profile`, or reclaim it (profile None)."""

    action: Action
    profile: str | None
    reason: str
    demand_slices: float = 0.0  # compute slices the p95 demand needs, with headroom
    memory_needed_bytes: float = 0.0  # peak memory with headroom


def recommend(summary: Summary, current: GiProfile, board: Board, policy: Policy) -> Recommendation:
    """Reclaim an idle instance; otherwise the smallest profile covering its demand, never a larger one.

    An instance is idle when its p95 activity is below the idle threshold (idle at least 95% of
    the window). Activity is relative to the instance and cannot show demand beyond its size, so a
    saturated instance is kept, not grown. Media-extension (`+me`) instances only move between
    `+me` profiles, so they keep their media engines.
    """
    demand = summary.p95 * current.compute_slices * (1 + policy.compute_headroom)
    memory = summary.memory_max_bytes * (1 + policy.memory_headroom)
    if summary.p95 < policy.idle_threshold:
        held = f"; it still holds up to {gib(summary.memory_max_bytes)}" if summary.memory_max_bytes else ""
        return Recommendation(
            "reclaim",
            None,
            f"idle {percent(summary.idle_fraction)} of the window (p95 activity {percent(summary.p95, 1)} "
            f"< {percent(policy.idle_threshold)}){held}",
            demand,
            memory,
        )
    candidates = sorted(
        (p for p in board.profiles if p.is_media_extension == current.is_media_extension),
        key=lambda p: (p.compute_slices, p.memory_slices),
    )
    fitting = [p for p in candidates if p.compute_slices >= demand - 1e-9 and p.memory_bytes >= memory]
    needs = f"p95 demand {demand:.2f} compute slices, peak memory {gib(memory)} with headroom"
    if not fitting or _larger(fitting[0], current):
        return Recommendation("keep", current.name, f"busy: {needs} (at or above its size)", demand, memory)
    best = fitting[0]
    if best == current:
        return Recommendation("keep", current.name, f"right-sized: {needs}", demand, memory)
    return Recommendation("resize", best.name, f"{needs} fit {best.name}", demand, memory)


def _larger(candidate: GiProfile, current: GiProfile) -> bool:
    """True when `candidate` takes more compute or memory slices than `current`."""
    return candidate.compute_slices > current.compute_slices or candidate.memory_slices > current.memory_slices
