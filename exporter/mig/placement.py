"""Placement rules: whether a set of GPU instances can coexist on one GPU."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.mig.catalog import COMPUTE_SLICES, MEMORY_SLICES, Board, GiProfile


class LayoutError(ValueError):
    """A layout that breaks a placement rule; the message names the rule and the instances."""


@dataclass(frozen=True, slots=True)
class Placement:
    """A GPU-instance profile placed at a memory-slice start."""

    profile: GiProfile
    start: int

    @property
    def end(self) -> int:
        """One past the last memory slice taken."""
        return self.start + self.profile.memory_slices

    def __str__(self) -> str:
        return f"{self.profile.name}@{self.start}"


def largest_first(profile: GiProfile) -> tuple[int, int, bool, str]:
    """Sort key putting the largest profiles first (memory, then compute; +me before its plain twin)."""
    return (-profile.memory_slices, -profile.compute_slices, not profile.is_media_extension, profile.name)


def count_error(board: Board, counts: Mapping[GiProfile, int]) -> str | None:
    """The first rule a demand (instances per profile) breaks on one GPU wherever they go, if any.

    It works on the counts (counts, +me, slice totals), so a demand of any size is answered without
    being spelled out.
    """
    for profile in sorted(counts, key=largest_first):
        if counts[profile] > profile.max_count:
            return f"{counts[profile]} x {profile.name} exceeds its maximum of {profile.max_count} per GPU"
    media = sum(n for p, n in counts.items() if p.is_media_extension)
    if media > 1:
        return f"at most one +me profile fits a GPU, asked for {media}"
    compute = sum(p.compute_slices * n for p, n in counts.items())
    if compute > COMPUTE_SLICES:
        return f"needs {compute} compute slices, {board.key} has {COMPUTE_SLICES}"
    memory = sum(p.memory_slices * n for p, n in counts.items())
    if memory > MEMORY_SLICES:
        return f"needs {memory} memory slices, {board.key} has {MEMORY_SLICES}"
    return None


def validate_layout(board: Board, placements: Iterable[Placement]) -> None:
    """Raise LayoutError for the first rule the layout breaks; return None when it is valid."""
    placed = sorted(placements, key=lambda p: p.start)
    for p in placed:
        if p.start not in p.profile.starts:
            allowed = ", ".join(map(str, p.profile.starts))
            raise LayoutError(
                f"{p.profile.name} cannot start at memory slice {p.start} on {board.key} (allowed starts: {allowed})"
            )
    for a, b in itertools.pairwise(placed):
        if b.start < a.end:
            raise LayoutError(f"{a} and {b} overlap in memory slices {b.start}..{min(a.end, b.end) - 1}")
    error = count_error(board, Counter(p.profile for p in placed))
    if error is not None:
        raise LayoutError(error)


def find_placement(
    board: Board, profiles: Iterable[GiProfile], fixed: Iterable[Placement] = ()
) -> list[Placement] | None:
    """Starts for `profiles` beside the `fixed` placements, or None when no valid layout exists.

    Exhaustive and deterministic: profiles are placed largest first, each at the lowest
    allowed start that leads to a complete valid layout. Results are in input order.
    """
    wanted = list(profiles)
    fixed = list(fixed)
    try:
        validate_layout(board, fixed)
    except LayoutError:
        return None
    order = sorted(range(len(wanted)), key=lambda i: (-wanted[i].memory_slices, -wanted[i].compute_slices, i))
    taken = 0
    for p in fixed:
        taken |= ((1 << p.profile.memory_slices) - 1) << p.start
    chosen: dict[int, int] = {}

    def search(k: int, taken: int) -> bool:
        if k == len(order):
            return True
        profile = wanted[order[k]]
        mask0 = (1 << profile.memory_slices) - 1
        for start in profile.starts:
            mask = mask0 << start
            if taken & mask:
                continue
            chosen[order[k]] = start
            if search(k + 1, taken | mask):
                return True
        return False

    if not search(0, taken):
        return None
    result = [Placement(p, chosen[i]) for i, p in enumerate(wanted)]
    try:
        validate_layout(board, [*fixed, *result])
    except LayoutError:
        return None
    return result
