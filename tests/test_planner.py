"""The MIG planner: single-GPU placement and fleet packing, checked against brute force and known layouts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.mig.catalog import BOARDS, Board, GiProfile, board
from exporter.mig.placement import LayoutError, Placement, validate_layout
from exporter.mig.planner import UnsupportedBoardError, pack, place

# Profiles by role, in the catalog's order on every board.
ROLES = ("1g", "me", "1g2", "2g", "3g", "4g", "7g")


def by_role(b: Board, *roles: str) -> list[GiProfile]:
    return [b.profiles[ROLES.index(r)] for r in roles]


def is_valid(b: Board, layout: Sequence[Placement]) -> bool:
    try:
        validate_layout(b, layout)
    except LayoutError:
        return False
    return True


def arrangements(b: Board, profiles: Sequence[GiProfile]) -> list[list[Placement]]:
    """Every valid arrangement of `profiles` on one GPU: each combination of allowed starts without overlap.

    Identical profiles take increasing starts, which skips arrangements that only swap equal instances.
    """
    out: list[list[Placement]] = []
    order = sorted(profiles, key=lambda p: p.name)

    def extend(i: int, layout: list[Placement], taken: set[int]) -> None:
        if i == len(order):
            if is_valid(b, layout):
                out.append(list(layout))
            return
        p = order[i]
        floor = layout[-1].start + 1 if layout and layout[-1].profile == p else 0
        for start in p.starts:
            slices = set(range(start, start + p.memory_slices))
            if start >= floor and not slices & taken:
                extend(i + 1, [*layout, Placement(p, start)], taken | slices)

    extend(0, [], set())
    return out


def fits_somehow(b: Board, profiles: Sequence[GiProfile]) -> bool:
    return bool(arrangements(b, profiles))


def brute_force_gpus(b: Board, demand: Sequence[GiProfile]) -> int:
    """The fewest GPUs for `demand`, by trying every assignment of instances to GPUs."""
    items = sorted(demand, key=lambda p: -p.memory_slices)
    cache: dict[tuple[str, ...], bool] = {}
    best = len(items)

    def fits(gpu: list[GiProfile]) -> bool:
        key = tuple(sorted(p.name for p in gpu))
        if key not in cache:
            cache[key] = fits_somehow(b, gpu)
        return cache[key]

    def assign(i: int, gpus: list[list[GiProfile]]) -> None:
        nonlocal best
        if len(gpus) >= best:
            return
        if i == len(items):
            best = len(gpus)
            return
        for j, gpu in enumerate(gpus):
            if fits([*gpu, items[i]]):
                assign(i + 1, [*gpus[:j], [*gpu, items[i]], *gpus[j + 1 :]])
        assign(i + 1, [*gpus, [items[i]]])

    assign(0, [])
    return best


boards = st.sampled_from(sorted(BOARDS.values(), key=lambda b: b.key))


@st.composite
def board_and_profiles(draw: st.DrawFn, max_size: int) -> tuple[Board, list[GiProfile]]:
    b = draw(boards)
    return b, draw(st.lists(st.sampled_from(b.profiles), max_size=max_size))


@settings(max_examples=200, deadline=None)
@given(board_and_profiles(max_size=8))
def test_placed_layouts_obey_the_rules_and_rejections_have_no_valid_placement(
    case: tuple[Board, list[GiProfile]],
) -> None:
    """A returned layout is valid and in input order; a rejected set has no valid arrangement at all."""
    b, profiles = case
    plan = place(b, profiles)
    if plan.fits:
        validate_layout(b, plan.placements)
        assert [p.profile for p in plan.placements] == profiles
        assert plan.reason is None
        assert plan.free_compute_slices == 7 - sum(p.compute_slices for p in profiles)
        assert plan.free_memory_slices == 8 - sum(p.memory_slices for p in profiles)
    else:
        assert plan.placements == []
        assert plan.reason
        assert not fits_somehow(b, profiles)


@settings(max_examples=200, deadline=None)
@given(board_and_profiles(max_size=6))
def test_still_fits_lists_exactly_the_profiles_that_can_be_added(case: tuple[Board, list[GiProfile]]) -> None:
    """A profile is listed as still fitting exactly when one more can be added without moving the others."""
    b, profiles = case
    plan = place(b, profiles)
    if not plan.fits:
        return
    for extra in b.profiles:
        addable = any(is_valid(b, [*plan.placements, Placement(extra, s)]) for s in extra.starts)
        assert (extra in plan.still_fits) == addable, extra.name


@settings(max_examples=200, deadline=None)
@given(board_and_profiles(max_size=6))
def test_chosen_layout_keeps_room_for_the_largest_profile_any_arrangement_could(
    case: tuple[Board, list[GiProfile]],
) -> None:
    """No other valid arrangement of the same profiles leaves room for a larger profile than the chosen one."""
    b, profiles = case
    plan = place(b, profiles)
    if not plan.fits:
        return

    def room(layout: list[Placement]) -> int:
        addable = [
            e.memory_slices * 8 + e.compute_slices
            for e in b.profiles
            if any(is_valid(b, [*layout, Placement(e, s)]) for s in e.starts)
        ]
        return max(addable, default=0)

    assert room(plan.placements) == max(room(layout) for layout in arrangements(b, profiles))


@settings(max_examples=300, deadline=None)
@given(board_and_profiles(max_size=9))
def test_fleet_packing_equals_the_brute_force_optimum(case: tuple[Board, list[GiProfile]]) -> None:
    """Packing uses exactly as many GPUs as the best assignment found by brute force, each layout valid."""
    b, demand = case
    layouts = pack(b, demand)
    for layout in layouts:
        validate_layout(b, layout)
        assert layout
    assert Counter(p.profile.name for layout in layouts for p in layout) == Counter(p.name for p in demand)
    assert len(layouts) == brute_force_gpus(b, demand)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(("1g", "me", "1g2", "2g", "3g", "4g")), min_size=8, max_size=11),
)
def test_fleet_packing_is_optimal_on_mixes_heavy_in_small_profiles(roles: list[str]) -> None:
    """Larger mixes without whole-GPU profiles (where +me spreading matters) still match brute force."""
    b = board("h100-80gb")
    demand = by_role(b, *roles)
    layouts = pack(b, demand)
    assert all(is_valid(b, layout) for layout in layouts)
    assert len(layouts) == brute_force_gpus(b, demand)


def test_fleet_packing_of_a_large_demand_is_valid_and_meets_the_slice_bound() -> None:
    """1,000 instances pack into valid layouts, no more GPUs than the slice count requires when it binds."""
    b = board("h100-80gb")
    demand = by_role(b, *(["1g"] * 600 + ["2g"] * 200 + ["3g"] * 100 + ["1g2"] * 100))
    layouts = pack(b, demand)
    assert all(is_valid(b, layout) for layout in layouts)
    assert Counter(p.profile.name for layout in layouts for p in layout) == Counter(p.name for p in demand)
    compute = sum(p.compute_slices for p in demand)
    memory = sum(p.memory_slices for p in demand)
    assert len(layouts) == max(-(-compute // 7), -(-memory // 8))


def test_fleet_example_from_the_issue() -> None:
    """12 x 1g.10gb and 4 x 3g.40gb need 4 H100s: 3g on the right half, four 1g on the left."""
    b = board("h100-80gb")
    layouts = pack(b, [b.profile("1g.10gb")] * 12 + [b.profile("3g.40gb")] * 4)
    assert len(layouts) == 4
    assert [str(p) for p in layouts[0]] == ["3g.40gb@4", "1g.10gb@0", "1g.10gb@1", "1g.10gb@2", "1g.10gb@3"]


def test_fleet_packing_spreads_media_extension_profiles_one_per_gpu() -> None:
    """Three +me instances need three GPUs even though their slices would fit one."""
    b = board("a100-40gb")
    layouts = pack(b, [b.profile("1g.5gb+me")] * 3)
    assert len(layouts) == 3
    assert pack(b, []) == []


def test_place_and_pack_reject_a_profile_of_another_board() -> None:
    """A profile that the chosen board does not offer is named in the error."""
    with pytest.raises(ValueError, match=r"'1g\.5gb' for h100-80gb"):
        pack(board("h100-80gb"), [board("a100-40gb").profile("1g.5gb")])
    with pytest.raises(ValueError, match=r"'1g\.5gb' for h100-80gb"):
        place(board("h100-80gb"), [board("a100-40gb").profile("1g.5gb")])


# --- known layouts per board ----------------------------------------------------------------------------

VALID = [
    ("1g",) * 7,
    ("me", "1g", "1g", "1g", "1g", "1g", "1g"),
    ("1g2",) * 4,
    ("2g", "2g", "2g", "1g"),
    ("3g", "3g"),
    ("4g", "3g"),
    ("4g", "2g", "1g2"),
    ("4g", "1g", "1g", "1g"),
    ("3g", "1g", "1g", "1g", "1g"),
    ("3g", "2g", "2g"),
    ("2g", "1g2", "1g2", "1g2"),
    ("7g",),
    (),
]
INVALID = [
    (("1g",) * 8, "8 x {1g} exceeds its maximum of 7 per GPU"),
    (("me", "me"), "2 x {me} exceeds its maximum of 1"),
    (("4g", "4g"), "2 x {4g} exceeds its maximum of 1"),
    (("3g", "3g", "3g"), "3 x {3g} exceeds its maximum of 2"),
    (("1g2",) * 5, "5 x {1g2} exceeds its maximum of 4"),
    (("7g", "1g"), "needs 8 compute slices"),
    (("4g", "2g", "2g"), "needs 8 compute slices"),
    (("3g", "3g", "1g"), "needs 9 memory slices"),
    (("1g2", "1g2", "1g2", "2g", "1g"), "needs 9 memory slices"),
]


@pytest.mark.parametrize("key", sorted(BOARDS))
@pytest.mark.parametrize("roles", VALID, ids=lambda r: "+".join(r) or "empty")
def test_known_valid_layouts_fit_every_board(key: str, roles: tuple[str, ...]) -> None:
    """Layouts from NVIDIA's MIG guide fit each board, with its own profile names."""
    b = board(key)
    plan = place(b, by_role(b, *roles))
    assert plan.fits, plan.reason
    validate_layout(b, plan.placements)


@pytest.mark.parametrize("key", sorted(BOARDS))
@pytest.mark.parametrize(("roles", "reason"), INVALID, ids=lambda r: "+".join(r) if isinstance(r, tuple) else "")
def test_known_invalid_layouts_name_the_broken_rule(key: str, roles: tuple[str, ...], reason: str) -> None:
    """Each impossible layout is rejected with the rule it breaks, in the board's own profile names."""
    b = board(key)
    plan = place(b, by_role(b, *roles))
    assert not plan.fits
    names = {f"{{{r}}}": by_role(b, r)[0].name for r in ROLES}
    expected = reason
    for token, name in names.items():
        expected = expected.replace(token, name)
    assert expected in (plan.reason or "")


@pytest.mark.parametrize(
    ("profiles", "expected"),
    [
        (["1g.10gb"], ["1g.10gb@6"]),  # leaves 0-3 for a 4g and 4-5 for a 2g
        (["3g.40gb"], ["3g.40gb@4"]),  # leaves the left half for a 4g
        (["2g.20gb"], ["2g.20gb@4"]),
        (["4g.40gb", "1g.10gb"], ["4g.40gb@0", "1g.10gb@6"]),  # leaves 4-5 for a 2g
    ],
)
def test_placement_prefers_the_layout_that_keeps_the_largest_room(profiles: list[str], expected: list[str]) -> None:
    """Among valid starts the planner keeps the largest profile addable, the way NVIDIA's guide advises."""
    b = board("h100-80gb")
    assert [str(p) for p in place(b, [b.profile(n) for n in profiles]).placements] == expected


def test_placement_is_deterministic() -> None:
    """The same request gives the same layout every time."""
    b = board("h200-141gb")
    request = [b.profile("1g.18gb")] * 3 + [b.profile("2g.35gb")]
    assert {tuple(map(str, place(b, request).placements)) for _ in range(5)} == {
        tuple(map(str, place(b, request).placements))
    }


def _odd_board() -> Board:
    """A made-up board: two profiles that may only start at 0, and a +me profile allowed twice by count."""
    h100 = board("h100-80gb")
    two = GiProfile("2g.x", 99, 3, 2, 2, 32, 19.0, (0,))
    one = GiProfile("1g.y", 98, 3, 1, 2, 16, 19.0, (0,))
    media = GiProfile("1g.z+me", 97, 2, 1, 1, 16, 9.0, (0, 1, 2, 3, 4, 5, 6))
    return Board("odd", "Odd", (), 80, (*h100.profiles, two, one, media))


def test_a_layout_that_fits_by_slices_but_not_by_starts_names_the_starts() -> None:
    """When only the allowed starts rule a layout out, the reason lists each profile's allowed starts."""
    b = _odd_board()
    plan = place(b, [b.profile("2g.x"), b.profile("1g.y")])
    assert not plan.fits
    assert plan.reason == ("no arrangement of allowed starts avoids overlapping memory slices (2g.x at 0, 1g.y at 0)")


def test_two_media_extension_profiles_break_the_one_per_gpu_rule() -> None:
    """Even where the count would allow two, a second +me profile on one GPU is rejected by name."""
    b = _odd_board()
    plan = place(b, [b.profile("1g.z+me")] * 2)
    assert plan.reason == "at most one +me profile fits a GPU, asked for 2"


@pytest.mark.parametrize(
    ("profiles", "starts", "reason"),
    [
        (["1g.z+me", "1g.z+me"], [0, 1], "at most one +me profile fits a GPU, asked for 2"),
        (["1g.u", "1g.u"], [0, 1], "2 x 1g.u exceeds its maximum of 1 per GPU"),
        (["4g.v", "4g.v"], [0, 1], "needs 8 compute slices, odd has 7"),
    ],
)
def test_the_planner_and_layout_validation_give_the_same_reason(
    profiles: list[str], starts: list[int], reason: str
) -> None:
    """The count, +me and slice rules live in one place: `place` and `validate_layout` name the same broken rule."""
    odd = _odd_board()
    extra = (GiProfile("1g.u", 96, 1, 1, 1, 16, 9.0, (0, 1)), GiProfile("4g.v", 95, 7, 4, 1, 64, 9.0, (0, 1)))
    b = Board(odd.key, odd.title, (), 80, (*odd.profiles, *extra))
    wanted = [b.profile(name) for name in profiles]
    assert place(b, wanted).reason == reason
    with pytest.raises(LayoutError, match=re.escape(reason)):
        validate_layout(b, [Placement(p, s) for p, s in zip(wanted, starts, strict=True)])


def test_fleet_packing_refuses_a_board_with_another_geometry() -> None:
    """Packing a board whose slice geometry it does not model is an error, not a wrong answer."""
    b = _odd_board()
    with pytest.raises(UnsupportedBoardError, match="odd"):
        pack(b, [b.profile("2g.x")])
