"""MIG layout planner: place profiles on one GPU, and pack a demand into the fewest GPUs.

`place` searches every arrangement of allowed starts and keeps the one that leaves the most room:
compared profile by profile, largest first, by how many more instances could still be added, then by
the longest free memory runs, then by the lowest starts. `pack` is a branch-and-bound over the board's
maximal single-GPU layouts with lower bounds; it is exact whenever it finishes within its node budget,
which it does on every small demand and on most large ones (where the first greedy dive already meets
the lower bound).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from exporter.mig.catalog import COMPUTE_SLICES, MEMORY_SLICES, Board, GiProfile
from exporter.mig.placement import Placement

_FULL_MEMORY = (1 << MEMORY_SLICES) - 1
# Nodes the fleet search may visit after its first greedy dive before it settles for the best found.
_NODE_BUDGET = 4000
# Demands whose lower bound exceeds this many GPUs are packed greedily down to this size first.
_EXACT_GPUS = 12


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of placing profiles on one GPU."""

    board: Board
    fits: bool
    placements: list[Placement]  # in input order; empty when it does not fit
    reason: str | None  # the rule that breaks, when it does not fit
    free_compute_slices: int
    free_memory_slices: int
    still_fits: tuple[GiProfile, ...]  # profiles of which one more could be added

    @property
    def free_memory_runs(self) -> list[tuple[int, int]]:
        """Free memory slices as (start, length) runs, lowest first."""
        taken = _mask(self.placements)
        runs: list[tuple[int, int]] = []
        for slice_ in range(MEMORY_SLICES):
            if taken >> slice_ & 1:
                continue
            if runs and runs[-1][0] + runs[-1][1] == slice_:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((slice_, 1))
        return runs


def _size_order(profile: GiProfile) -> tuple[int, int, bool, str]:
    """Sort key putting the largest profiles first (memory, then compute; +me before its plain twin)."""
    return (-profile.memory_slices, -profile.compute_slices, not profile.is_media_extension, profile.name)


def _mask(placements: Sequence[Placement]) -> int:
    taken = 0
    for p in placements:
        taken |= ((1 << p.profile.memory_slices) - 1) << p.start
    return taken


def _aggregate_error(board: Board, profiles: Sequence[GiProfile]) -> str | None:
    """The first rule a set of profiles breaks regardless of where they are placed, if any."""
    counts = Counter(p.name for p in profiles)
    for profile in sorted(set(profiles), key=_size_order):
        if counts[profile.name] > profile.max_count:
            return f"{counts[profile.name]} x {profile.name} exceeds its maximum of {profile.max_count} per GPU"
    media = sum(1 for p in profiles if p.is_media_extension)
    if media > 1:
        return f"at most one +me profile fits a GPU, asked for {media}"
    compute = sum(p.compute_slices for p in profiles)
    if compute > COMPUTE_SLICES:
        return f"needs {compute} compute slices, {board.key} has {COMPUTE_SLICES}"
    memory = sum(p.memory_slices for p in profiles)
    if memory > MEMORY_SLICES:
        return f"needs {memory} memory slices, {board.key} has {MEMORY_SLICES}"
    return None


def _headroom(board: Board, placements: Sequence[Placement]) -> tuple[int, ...]:
    """For each profile, largest first: how many more instances of it alone could still be added."""
    taken = _mask(placements)
    counts = Counter(p.profile.name for p in placements)
    compute_left = COMPUTE_SLICES - sum(p.profile.compute_slices for p in placements)
    media_used = any(p.profile.is_media_extension for p in placements)
    out = []
    for profile in sorted(board.profiles, key=_size_order):
        # Equal-size intervals: taking the lowest free start each time packs the most.
        fit, mask0, free = 0, (1 << profile.memory_slices) - 1, taken
        for start in profile.starts:
            if not free & (mask0 << start):
                free |= mask0 << start
                fit += 1
        fit = min(fit, profile.max_count - counts[profile.name], compute_left // profile.compute_slices)
        if profile.is_media_extension and media_used:
            fit = 0
        out.append(max(fit, 0))
    return tuple(out)


def _runs_desc(taken: int) -> tuple[int, ...]:
    runs = [len(list(g)) for free, g in itertools.groupby(range(MEMORY_SLICES), lambda s: not taken >> s & 1) if free]
    return tuple(sorted(runs, reverse=True))


def _placement_reason(profiles: Sequence[GiProfile]) -> str:
    """Why profiles that pass the slice and count rules still find no arrangement."""
    parts = ", ".join(f"{p.name} at {'/'.join(map(str, p.starts))}" for p in sorted(set(profiles), key=_size_order))
    return f"no arrangement of allowed starts avoids overlapping memory slices ({parts})"


def place(board: Board, profiles: Sequence[GiProfile]) -> Plan:
    """Place `profiles` on one GPU of `board`, keeping the most room free; see the module docstring."""
    wanted = list(profiles)
    error = _aggregate_error(board, wanted)
    if error is None:
        best = _best_arrangement(board, wanted)
        if best is None:
            error = _placement_reason(wanted)
    if error is not None:
        return Plan(board, False, [], error, COMPUTE_SLICES, MEMORY_SLICES, ())
    assert best is not None
    headroom = _headroom(board, best)
    ordered = sorted(board.profiles, key=_size_order)
    still = tuple(p for p in board.profiles if headroom[ordered.index(p)] > 0)
    return Plan(
        board,
        True,
        best,
        None,
        COMPUTE_SLICES - sum(p.compute_slices for p in wanted),
        MEMORY_SLICES - bin(_mask(best)).count("1"),
        still,
    )


def _best_arrangement(board: Board, wanted: list[GiProfile]) -> list[Placement] | None:
    """Every valid arrangement, scored; identical profiles take increasing starts to skip mirror images."""
    order = sorted(range(len(wanted)), key=lambda i: (_size_order(wanted[i]), i))
    starts = [0] * len(wanted)
    best: list[Placement] | None = None
    best_key: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None

    def search(k: int, taken: int, floor: int) -> None:
        nonlocal best, best_key
        if k == len(order):
            layout = [Placement(p, s) for p, s in zip(wanted, starts, strict=True)]
            key = (_headroom(board, layout), _runs_desc(taken), tuple(-s for s in starts))
            if best_key is None or key > best_key:
                best, best_key = layout, key
            return
        index = order[k]
        profile = wanted[index]
        mask0 = (1 << profile.memory_slices) - 1
        for start in profile.starts:
            if start < floor or taken & (mask0 << start):
                continue
            starts[index] = start
            same_next = k + 1 < len(order) and wanted[order[k + 1]] == profile
            search(k + 1, taken | (mask0 << start), start + 1 if same_next else 0)

    search(0, 0, 0)
    return best


# --- fleet packing --------------------------------------------------------------------------------------

Vector = tuple[int, ...]


@cache
def _feasible(board: Board) -> frozenset[Vector]:
    """Every multiset of the board's profiles (as counts in board order) that fits one GPU."""
    ranges = [range(p.max_count + 1) for p in board.profiles]
    out = set()
    for counts in itertools.product(*ranges):
        profiles = [p for p, n in zip(board.profiles, counts, strict=True) for _ in range(n)]
        if _aggregate_error(board, profiles) is None and _best_arrangement(board, profiles) is not None:
            out.add(counts)
    return frozenset(out)


@cache
def _maximal(board: Board) -> tuple[Vector, ...]:
    """Feasible multisets to which no further instance can be added, in a fixed order."""
    feasible = _feasible(board)
    out = []
    for v in sorted(feasible, reverse=True):
        bumped = ((*v[:i], v[i] + 1, *v[i + 1 :]) for i in range(len(v)))
        if not any(b in feasible for b in bumped):
            out.append(v)
    return tuple(out)


@cache
def _layout(board: Board, counts: Vector) -> tuple[Placement, ...]:
    profiles = sorted((p for p, n in zip(board.profiles, counts, strict=True) for _ in range(n)), key=_size_order)
    return tuple(place(board, profiles).placements)


def _weights(board: Board) -> tuple[int, ...]:
    """How much of a GPU each profile takes, in 56ths (compute of 7 plus memory of 8); +me counts extra."""
    return tuple(
        p.compute_slices * 8 + p.memory_slices * 7 + (1 if p.is_media_extension else 0) for p in board.profiles
    )


def lower_bound(board: Board, demand: Sequence[GiProfile]) -> int:
    """A number of GPUs that no packing of `demand` can beat."""
    return _lower_bound(board, _vector(board, demand))


def _lower_bound(board: Board, d: Vector) -> int:
    profiles = board.profiles
    whole = sum(n for p, n in zip(profiles, d, strict=True) if p.compute_slices == COMPUTE_SLICES)
    rest = [(p, n) for p, n in zip(profiles, d, strict=True) if p.compute_slices < COMPUTE_SLICES]
    per_gpu = {i: max(v[i] for v in _maximal(board)) for i in range(len(profiles))}
    bounds = [
        math.ceil(sum(p.compute_slices * n for p, n in rest) / COMPUTE_SLICES),
        math.ceil(sum(p.memory_slices * n for p, n in rest) / MEMORY_SLICES),
        sum(n for p, n in rest if p.is_media_extension),
        # Two profiles of more than half the compute slices never share a GPU.
        sum(n for p, n in rest if 2 * p.compute_slices > COMPUTE_SLICES),
    ]
    bounds += [math.ceil(n / per_gpu[i]) for i, (_, n) in enumerate(zip(profiles, d, strict=True)) if n and per_gpu[i]]
    return whole + max(bounds)


def _vector(board: Board, demand: Sequence[GiProfile]) -> Vector:
    counts = Counter(p.name for p in demand)
    for name in counts:
        board.profile(name)  # raises UnknownProfileError for a profile of another board
    return tuple(counts[p.name] for p in board.profiles)


def pack(board: Board, demand: Sequence[GiProfile]) -> list[list[Placement]]:
    """Layouts for the fewest GPUs of `board` that together hold every instance in `demand`.

    Exact when the search completes (always for small demands); otherwise the best found within a fixed
    node budget, so the answer is deterministic. Compare with `lower_bound` to see how close it is.
    """
    d = _vector(board, demand)
    if not any(d):
        return []
    maximal = _maximal(board)
    weights = _weights(board)
    # The type every candidate GPU must contain: the largest remaining profile (breaks GPU-order symmetry).
    by_size = sorted(range(len(board.profiles)), key=lambda i: _size_order(board.profiles[i]))

    def candidates(rem: Vector) -> list[Vector]:
        lead = next(i for i in by_size if rem[i])
        subs = {tuple(min(a, b) for a, b in zip(v, rem, strict=True)) for v in maximal if v[lead]}
        kept = [s for s in subs if not any(o != s and all(x <= y for x, y in zip(s, o, strict=True)) for o in subs)]
        kept.sort(key=lambda s: (-sum(w * n for w, n in zip(weights, s, strict=True)), tuple(-n for n in s)))
        return kept

    # Greedy bulk: while the demand is large, give each GPU the fullest layout holding the largest profile
    # left; the exact search below then settles the last few GPUs, where a greedy choice goes wrong.
    rem, prefix = d, []
    while _lower_bound(board, rem) > _EXACT_GPUS:
        gpu = candidates(rem)[0]
        prefix.append(gpu)
        rem = tuple(a - b for a, b in zip(rem, gpu, strict=True))

    best: list[Vector] | None = None
    seen: dict[Vector, int] = {}
    nodes = 0
    root_bound = _lower_bound(board, rem)

    def search(rem: Vector, path: list[Vector]) -> bool:
        """Depth-first; True once a packing meeting the root lower bound is found (nothing can beat it)."""
        nonlocal best, nodes
        if not any(rem):
            if best is None or len(path) < len(best):
                best = list(path)
            return len(path) == root_bound
        if best is not None:
            if nodes >= _NODE_BUDGET or len(path) + _lower_bound(board, rem) >= len(best):
                return False
            nodes += 1
        if seen.get(rem, math.inf) <= len(path):
            return False
        seen[rem] = len(path)
        for gpu in candidates(rem):
            path.append(gpu)
            done = search(tuple(a - b for a, b in zip(rem, gpu, strict=True)), path)
            path.pop()
            if done:
                return True
        return False

    if any(rem):
        search(rem, [])
    assert best is not None or not any(rem)
    return [list(_layout(board, gpu)) for gpu in [*prefix, *(best or [])]]
