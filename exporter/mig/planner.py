"""MIG layout planner: place profiles on one GPU, and pack a demand into the fewest GPUs.

`place` searches every arrangement of allowed starts and keeps the one that leaves the most room:
compared profile by profile, largest first, by how many more instances could still be added, then by
the longest free memory runs, then by the lowest starts.

`pack` is exact at any size. It relies on the slice geometry every catalog board shares: apart from the
whole-GPU profile, no allowed placement crosses the middle of the memory row, so a GPU is a left half
(memory 0-3: one 4g or 3g, or two pairs) and a right half (memory 4-7: one 3g, or the pair 4-5 and the
pair 6-7, which takes a double-memory 1g or a single 1g but no 2g). Pairs of one kind are interchangeable,
so whether a demand fits G GPUs depends only on how many 3g sit on the left; the smallest G is found by
bisection and the layouts are then built pair by pair.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from exporter.mig.catalog import COMPUTE_SLICES, MEMORY_SLICES, Board, GiProfile
from exporter.mig.placement import Placement, count_error, largest_first


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of placing profiles on one GPU."""

    board: Board
    fits: bool
    placements: list[Placement]  # in input order; empty when it does not fit
    reason: str | None  # the rule that breaks, when it does not fit
    free_compute_slices: int  # left after the placements (all 7 when it does not fit)
    free_memory_slices: int  # left after the placements (all 8 when it does not fit)
    still_fits: tuple[GiProfile, ...]  # profiles of which one more could be added; empty when it does not fit

    @classmethod
    def refused(cls, board: Board, reason: str) -> Plan:
        """The plan of a demand that does not fit, for `reason`."""
        return cls(board, False, [], reason, COMPUTE_SLICES, MEMORY_SLICES, ())

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


def _mask(placements: Sequence[Placement]) -> int:
    taken = 0
    for p in placements:
        taken |= ((1 << p.profile.memory_slices) - 1) << p.start
    return taken


def _headroom(board: Board, placements: Sequence[Placement]) -> tuple[int, ...]:
    """For each profile, largest first: how many more instances of it alone could still be added."""
    taken = _mask(placements)
    counts = Counter(p.profile.name for p in placements)
    compute_left = COMPUTE_SLICES - sum(p.profile.compute_slices for p in placements)
    media_used = any(p.profile.is_media_extension for p in placements)
    out = []
    for profile in sorted(board.profiles, key=largest_first):
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
    parts = ", ".join(f"{p.name} at {'/'.join(map(str, p.starts))}" for p in sorted(set(profiles), key=largest_first))
    return f"no arrangement of allowed starts avoids overlapping memory slices ({parts})"


def place(board: Board, profiles: Sequence[GiProfile]) -> Plan:
    """Place `profiles` on one GPU of `board`, keeping the most room free; see the module docstring.

    Raises UnknownProfileError for a profile the board does not offer.
    """
    wanted = list(profiles)
    for p in wanted:
        board.profile(p.name)
    error = count_error(board, Counter(wanted))
    if error is None:
        best = _best_arrangement(board, wanted)
        if best is None:
            error = _placement_reason(wanted)
    if error is not None:
        return Plan.refused(board, error)
    assert best is not None
    headroom = _headroom(board, best)
    ordered = sorted(board.profiles, key=largest_first)
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
    order = sorted(range(len(wanted)), key=lambda i: (largest_first(wanted[i]), i))
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

# The slice geometry `pack` relies on, by role: (compute slices, memory slices, allowed starts, max count).
_SHAPE = {
    "7g": (7, 8, (0,), 1),
    "4g": (4, 4, (0,), 1),
    "3g": (3, 4, (0, 4), 2),
    "2g": (2, 2, (0, 2, 4), 3),
    "1g2": (1, 2, (0, 2, 4, 6), 4),
    "1g": (1, 1, (0, 1, 2, 3, 4, 5, 6), 7),
    "me": (1, 1, (0, 1, 2, 3, 4, 5, 6), 1),
}


class UnsupportedBoardError(ValueError):
    """A board whose slice geometry fleet packing does not model."""


@cache
def _roles(board: Board) -> dict[str, GiProfile]:
    """The board's profile for each role of the standard geometry; raises UnsupportedBoardError."""
    roles: dict[str, GiProfile] = {}
    for p in board.profiles:
        role = next(
            (
                r
                for r, shape in _SHAPE.items()
                if shape == (p.compute_slices, p.memory_slices, p.starts, p.max_count)
                and (r == "me") == p.is_media_extension
            ),
            None,
        )
        if role is None or role in roles:
            raise UnsupportedBoardError(f"fleet packing does not model the slice geometry of {board.key}")
        roles[role] = p
    if roles.keys() != _SHAPE.keys():
        raise UnsupportedBoardError(f"fleet packing does not model the slice geometry of {board.key}")
    return roles


@dataclass(frozen=True, slots=True)
class _Halves:
    """How G GPUs split into halves and pairs when `x` of the 3g instances sit on the left."""

    full_full: int  # 4g/3g left with 3g right: no pairs
    full_ab: int  # 4g/3g left with a right A and B pair
    aa_full: int  # two left A pairs with a 3g right
    aa_ab: int  # two left A pairs, a right A and B pair
    me_in_b: int  # +me instances put in B pairs (the rest take a slot of an A pair)

    @property
    def a_pairs(self) -> int:
        return self.full_ab + 2 * self.aa_full + 3 * self.aa_ab

    @property
    def b_pairs(self) -> int:
        return self.full_ab + self.aa_ab


def _fits(n: dict[str, int], gpus: int, x: int) -> _Halves | None:
    """The split of `gpus` GPUs (besides the 7g ones) that holds demand `n` with x 3g on the left, if any."""
    y = n["3g"] - x
    left_full, left_aa = n["4g"] + x, gpus - n["4g"] - x
    right_ab = gpus - y
    if min(y, left_aa, right_ab) < 0:
        return None
    # Pairing full left halves with A+B right halves first leaves the most GPUs with pairs (for +me).
    full_ab = min(left_full, right_ab)
    h = _Halves(left_full - full_ab, full_ab, y - (left_full - full_ab), right_ab - full_ab, 0)
    if n["me"] > gpus - h.full_full:
        return None
    # +me in a spare B pair costs nothing; past the B pairs the double-memory 1g needs, it costs capacity.
    me_b = min(max(h.b_pairs - n["1g2"], 0), n["me"], h.b_pairs)
    a_free, b_free = h.a_pairs - (n["me"] - me_b), h.b_pairs - me_b
    b20 = min(n["1g2"], b_free)
    a_free -= n["2g"] + n["1g2"] - b20
    if a_free < 0:
        return None
    if 2 * a_free + (b_free - b20) + (n["me"] - me_b) < n["1g"]:
        return None
    return _Halves(h.full_full, h.full_ab, h.aa_full, h.aa_ab, me_b)


def _smallest(n: dict[str, int]) -> tuple[int, int, _Halves]:
    """The fewest GPUs (besides the 7g ones) for demand `n`, with the 3g split and halves that achieve it."""

    def split(gpus: int) -> tuple[int, _Halves] | None:
        for x in range(n["3g"] + 1):
            h = _fits(n, gpus, x)
            if h is not None:
                return x, h
        return None

    low, high = 0, sum(v for k, v in n.items() if k != "7g")  # one instance per GPU always fits
    while low < high:
        mid = (low + high) // 2
        if split(mid) is None:
            low = mid + 1
        else:
            high = mid
    found = split(low)
    assert found is not None
    return low, found[0], found[1]


def pack(board: Board, demand: Sequence[GiProfile]) -> list[list[Placement]]:
    """Layouts for the fewest GPUs of `board` that together hold every instance in `demand` (exact).

    Raises UnknownProfileError for a profile the board does not offer.
    """
    roles = _roles(board)
    counts = Counter(p.name for p in demand)
    for name in counts:
        board.profile(name)
    n = {role: counts[p.name] for role, p in roles.items()}
    gpus, x, h = _smallest(n)
    # Each GPU as its slots: a profile role per start, or "A"/"B" for a free pair, "a" for a free 1g slot.
    slots: list[dict[int, str]] = (
        [{0: "4g|3g", 4: "3g"}] * h.full_full
        + [{0: "4g|3g", 4: "A", 6: "B"}] * h.full_ab
        + [{0: "A", 2: "A", 4: "3g"}] * h.aa_full
        + [{0: "A", 2: "A", 4: "A", 6: "B"}] * h.aa_ab
    )
    slots = [dict(s) for s in slots]
    lefts = iter(["4g"] * n["4g"] + ["3g"] * x)
    for s in slots:
        if s.get(0) == "4g|3g":
            s[0] = next(lefts)

    def take(kind: str, role: str, limit: int, skip: frozenset[int] = frozenset()) -> list[int]:
        """Fill up to `limit` free slots of `kind` with `role`, GPU by GPU; the GPU of each slot filled."""
        used: list[int] = []
        for i, s in enumerate(slots):
            for start in sorted(s):
                if len(used) == limit:
                    return used
                if s[start] == kind and i not in skip:
                    s[start] = role
                    if kind == "A" and role in ("1g", "me"):
                        s[start + 1] = "a"  # the pair's second slot stays free for a 1g
                    used.append(i)
                    if role == "me":
                        break  # at most one +me per GPU
        return used

    me_gpus = frozenset(take("B", "me", h.me_in_b))
    take("A", "me", n["me"] - h.me_in_b, skip=me_gpus)
    take("A", "2g", n["2g"])
    take("A", "1g2", n["1g2"] - len(take("B", "1g2", n["1g2"])))
    left = n["1g"] - len(take("a", "1g", n["1g"]))
    left -= len(take("B", "1g", left))
    left -= len(take("A", "1g", (left + 1) // 2))
    left -= len(take("a", "1g", left))
    assert left == 0
    layouts = [[roles["7g"]]] * n["7g"] + [[roles[v] for _, v in sorted(s.items()) if v in roles] for s in slots]
    assert len(layouts) == n["7g"] + gpus
    return [list(_layout(board, tuple(sorted(profiles, key=largest_first)))) for profiles in layouts]


@cache
def _layout(board: Board, profiles: tuple[GiProfile, ...]) -> tuple[Placement, ...]:
    plan = place(board, profiles)
    assert plan.fits, plan.reason
    return tuple(plan.placements)
