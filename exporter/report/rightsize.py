"""Right-sizing: the profile each GPU instance should have, judged by its p95 demand and peak memory.

Every recommendation names the constraint that decided it: `idle` (reclaim), `periodic` (idle at the p95,
but used on separate days: a time-share candidate), `compute` (its p95 demand), `memory` (its peak memory
needs the profile), `+me` (its media engines exist only on +me profiles). The p95 tests are exact (see
stats.Summary); the figures quoted in the reason are the shown ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exporter.contract.thresholds import IDLE_RATIO, THRESHOLD_TOLERANCE
from exporter.mig.catalog import BOARDS, Board, GiProfile
from exporter.report.stats import Summary
from exporter.units import gib, percent

Action = Literal["keep", "resize", "reclaim", "time-share"]
Constraint = Literal["idle", "periodic", "compute", "memory", "+me", "catalog", "no data"]
ACTIONS: tuple[Action, ...] = ("keep", "resize", "time-share", "reclaim")
# Every compute-slice count a MIG profile has on any board.
COMPUTE_SLICE_COUNTS = tuple(sorted({p.compute_slices for b in BOARDS.values() for p in b.profiles}))


@dataclass(frozen=True, slots=True)
class Policy:
    """How generous right-sizing is."""

    idle_threshold: float = IDLE_RATIO  # activity below this counts as idle
    compute_headroom: float = 0.2  # demand is p95 activity x compute slices x (1 + this)
    memory_headroom: float = 0.1  # peak memory used x (1 + this) must fit


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What to do with one instance: keep it, resize it to `profile`, share it, or reclaim it (profile None)."""

    action: Action
    profile: str | None
    constraint: Constraint
    reason: str


def compute_slices_of(profile: str) -> int | None:
    """A MIG profile's compute slices, from its name, which starts with them (`3g.40gb` has 3)."""
    head, dot, _ = profile.partition("g.")
    return int(head) if dot and head.isdigit() else None


def fit_thresholds(profile: str, policy: Policy) -> dict[int, float]:
    """For each compute-slice count up to the instance's own: the step mean at or below which the step's demand
    (mean x its compute slices x (1 + headroom)) fits that many slices.

    The ratio is rounded to 12 decimals, so equal ratios (1 of 2 slices, 2 of 4) give one threshold, and the
    threshold tolerance is added: a mean within it of the threshold counts as at it.
    """
    current = compute_slices_of(profile)
    if current is None:
        return {}
    factor = current * (1 + policy.compute_headroom)
    return {n: round(n / factor, 12) + THRESHOLD_TOLERANCE for n in COMPUTE_SLICE_COUNTS if n <= current}


def unassessed(profile: str, constraint: Constraint, reason: str) -> Recommendation:
    """Keep an instance the review cannot judge (unknown board or profile, no activity data)."""
    return Recommendation("keep", profile, constraint, reason)


def _days(summary: Summary) -> str:
    count = len(summary.active_days)
    return f"active on {count} day{'s' if count != 1 else ''}"


def recommend(summary: Summary, current: GiProfile, board: Board, policy: Policy) -> Recommendation:
    """Reclaim (or time-share) an idle instance; otherwise the smallest profile covering its demand, never larger.

    An instance is idle when its p95 activity is below the idle threshold (idle at least 95% of the window).
    Activity is relative to the instance and cannot show demand beyond its size, so a saturated instance is
    kept, not grown. Media-extension (`+me`) instances only move between `+me` profiles.
    """
    if summary.p95_idle:
        return _unused(summary, current, policy)
    return _sized(summary, current, board, policy)


def _unused(summary: Summary, current: GiProfile, policy: Policy) -> Recommendation:
    idle = f"idle {percent(summary.idle_fraction)} of the window (p95 activity below {percent(policy.idle_threshold)})"
    if summary.recurring:
        return Recommendation(
            "time-share",
            current.name,
            "periodic",
            f"periodic: {idle}, but {_days(summary)}, up to {percent(summary.max)}: share a slice by time-slicing "
            "with other periodic jobs rather than reclaim it (kept in the layout below)",
        )
    held = f"; it still holds up to {gib(summary.memory_max_bytes)}" if summary.memory_max_bytes else ""
    when = f", {_days(summary)}" if summary.active_days else ""
    return Recommendation("reclaim", None, "idle", f"idle: {idle}{when}{held}")


def _sized(summary: Summary, current: GiProfile, board: Board, policy: Policy) -> Recommendation:
    memory = summary.memory_max_bytes * (1 + policy.memory_headroom)

    def smallest(media: bool | None, *, memory_fit: bool = True) -> GiProfile | None:
        kinds = [p for p in board.profiles if media is None or p.is_media_extension == media]
        for p in sorted(kinds, key=lambda p: (p.compute_slices, p.memory_slices)):
            if summary.p95_fits(p.compute_slices) and (not memory_fit or p.memory_bytes >= memory):
                return p
        return None

    best = smallest(current.is_media_extension)
    by_compute = smallest(current.is_media_extension, memory_fit=False)
    unrestricted = smallest(None)
    demand = f"p95 demand {_slices(summary, current)} ({percent(policy.compute_headroom)} headroom)"
    needs_memory = f"peak memory {gib(summary.memory_max_bytes)} ({gib(memory)} with headroom)"
    if by_compute is None or _larger(by_compute, current):
        return Recommendation("keep", current.name, "compute", f"busy: {demand}")
    if best is None or _larger(best, current):
        return Recommendation(
            "keep",
            current.name,
            "memory",
            f"memory-bound: {needs_memory} does not fit its {gib(current.memory_bytes)}; it is never grown "
            f"(compute alone would fit {by_compute.name})",
        )
    action: Action = "keep" if best == current else "resize"
    constraint: Constraint = "compute" if best == by_compute else "memory"
    if current.is_media_extension and unrestricted is not None and unrestricted.name != best.name:
        constraint = "+me"
        reason = (
            f"+me: its media engines exist only on +me profiles ({best.name}); without them {unrestricted.name} "
            f"would do ({demand}, {needs_memory})"
        )
    elif constraint == "compute":
        reason = f"right-sized: {demand}" if action == "keep" else f"compute: {demand} fits {best.name}"
    else:
        verdict = "memory-bound" if action == "keep" else "memory"
        reason = f"{verdict}: {needs_memory} needs {best.name} (compute alone would fit {by_compute.name})"
    return Recommendation(action, best.name, constraint, reason)


def _slices(summary: Summary, current: GiProfile) -> str:
    """What the p95 demand needs, exactly: "needs 1 compute slice", "exceeds its 3 compute slices"."""
    needed = next((n for n in range(1, current.compute_slices + 1) if summary.p95_fits(n)), None)
    if needed is None:
        return f"exceeds its {current.compute_slices} compute slice{'s' if current.compute_slices != 1 else ''}"
    return f"needs {needed} compute slice{'s' if needed != 1 else ''}"


def _larger(candidate: GiProfile, current: GiProfile) -> bool:
    """True when `candidate` takes more compute or memory slices than `current`."""
    return candidate.compute_slices > current.compute_slices or candidate.memory_slices > current.memory_slices
