"""`mig-exporter plan`: check and place a MIG layout on one GPU, or pack a demand into the fewest GPUs."""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from exporter.cli.settings import ConfigError
from exporter.excerpt import excerpt
from exporter.mig.catalog import (
    COMPUTE_SLICES,
    DEFAULT_BOARD,
    MEMORY_SLICES,
    Board,
    GiProfile,
    UnknownBoardError,
    UnknownProfileError,
    board,
    board_for_model,
)
from exporter.mig.parted import PLACEMENT_NOTE, mig_parted_config
from exporter.mig.placement import Placement, count_error
from exporter.mig.planner import Plan, pack, place
from exporter.mig.svg import SliceBox, slice_map_svg

OUTPUTS = ("text", "json", "mig-parted", "svg")
_ITEM = re.compile(r"(?:(\d+)\s*[x*]\s*)?(\S+)")
MAX_COUNT = 1_000_000  # instances of one profile in one argument
MAX_FLEET_INSTANCES = 100_000  # about 14,000 GPUs: more than a fleet of hundreds of nodes holds
# mig-parted config names are the value of the GPU Operator's nvidia.com/mig.config node label.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_CELL = 12  # characters per slice in the text slice map: room for "1g.10gb+me"


def add_parser(commands: Any) -> None:
    """Add the `plan` subcommand to the CLI's subparsers."""
    plan = commands.add_parser(
        "plan",
        help="validate and place a MIG layout, or pack a demand into the fewest GPUs",
        description="Place MIG profiles on one GPU (exit 0 when they fit, 1 with the reason when not), or with "
        "--fleet pack a demand such as 12x1g.10gb 4x3g.40gb into the fewest GPUs.",
    )
    plan.add_argument("profiles", nargs="+", metavar="PROFILE", help="a profile such as 3g.40gb, or NxPROFILE")
    plan.add_argument(
        "--gpu",
        default=DEFAULT_BOARD,
        metavar="KEY",
        help=f"GPU board key or driver model name (default {DEFAULT_BOARD})",
    )
    plan.add_argument("--fleet", action="store_true", help="pack the profiles into the fewest GPUs")
    plan.add_argument("--output", choices=OUTPUTS, default="text", help="output format (default text)")
    plan.add_argument(
        "--config-name",
        default="planned",
        metavar="NAME",
        help="name of the mig-configs entry for --output mig-parted (default planned)",
    )


def _board(key: str) -> Board:
    try:
        return board(key)
    except UnknownBoardError as exc:
        found = board_for_model(key)
        if found is None:
            raise ConfigError(f"--gpu: {exc}") from None
        return found


def _demand(b: Board, items: Sequence[str]) -> list[tuple[GiProfile, int]]:
    """(profile, count) from PROFILE / NxPROFILE arguments, in order; raises ConfigError naming the bad one."""
    out: list[tuple[GiProfile, int]] = []
    for item in items:
        m = _ITEM.fullmatch(item.strip())
        if m is None:
            raise ConfigError(f"bad profile {excerpt(item)}: expected PROFILE or NxPROFILE, e.g. 3g.40gb or 4x1g.10gb")
        digits = (m.group(1) or "1").lstrip("0") or "0"
        if len(digits) > len(str(MAX_COUNT)) or int(digits) > MAX_COUNT:
            raise ConfigError(f"bad count in {excerpt(item)}: at most {MAX_COUNT:,}")
        count = int(digits)
        if count < 1:
            raise ConfigError(f"bad count in {excerpt(item)}: must be at least 1")
        try:
            profile = b.profile(m.group(2))
        except UnknownProfileError as exc:
            raise ConfigError(str(exc)) from None
        out.append((profile, count))
    return out


def _config_name(name: str) -> str:
    if not name.strip():
        raise ConfigError("--config-name: must not be empty")
    if not _LABEL_VALUE.fullmatch(name):
        raise ConfigError(
            f"--config-name: {excerpt(name)} is not a name mig-parted and the GPU Operator take: up to 63 "
            "letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        )
    return name


def run(args: argparse.Namespace) -> int:
    """Run `plan` from parsed arguments; returns the exit code (bad input raises ConfigError)."""
    b = _board(args.gpu)
    items = _demand(b, args.profiles)
    name = _config_name(args.config_name)
    counts: Counter[GiProfile] = Counter()
    for profile, count in items:
        counts[profile] += count
    if args.fleet:
        if args.output == "svg":
            raise ConfigError("--output svg draws one GPU's layout; use text, json or mig-parted with --fleet")
        total = sum(counts.values())
        if total > MAX_FLEET_INSTANCES:
            raise ConfigError(
                f"--fleet: {total:,} instances are more than the {MAX_FLEET_INSTANCES:,} one plan packs; "
                "split the demand"
            )
        layouts = pack(b, [p for p, n in items for _ in range(n)])
        print(_fleet_output(b, counts, layouts, args.output, name), end="")
        return 0
    error = count_error(b, counts)  # on the counts: a demand that cannot fit is never spelled out
    plan = Plan.refused(b, error) if error else place(b, [p for p, n in items for _ in range(n)])
    if not plan.fits:
        if args.output == "json":
            print(json.dumps(plan_json(plan), indent=2))
        elif args.output == "text":
            print(f"{_summary(counts)} does not fit {b.key}: {plan.reason}")
        else:
            print(f"mig-exporter: {_summary(counts)} does not fit {b.key}: {plan.reason}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(plan_json(plan), indent=2))
    elif args.output == "mig-parted":
        print(_parted_yaml(b, [plan.placements], name), end="")
    elif args.output == "svg":
        boxes = [
            SliceBox(p.start, p.profile.memory_slices, p.profile.compute_slices, p.profile.name)
            for p in plan.placements
        ]
        print(slice_map_svg(b, boxes, title=f"{_summary(counts)} on {b.title}"), end="")
    else:
        print(_plan_text(plan, counts), end="")
    return 0


# --- JSON ----------------------------------------------------------------------------------------------


def _instance_json(p: Placement) -> dict[str, Any]:
    return {
        "profile": p.profile.name,
        "start": p.start,
        "size": p.profile.memory_slices,
        "compute_slices": p.profile.compute_slices,
        "memory_slices": p.profile.memory_slices,
    }


def _free_json(plan: Plan) -> dict[str, Any]:
    return {
        "compute_slices": plan.free_compute_slices,
        "memory_slices": plan.free_memory_slices,
        "memory_runs": [{"start": s, "size": n} for s, n in plan.free_memory_runs],
        "still_fits": [p.name for p in plan.still_fits],
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """The JSON document for one GPU's plan."""
    return {
        "gpu": plan.board.key,
        "fits": plan.fits,
        "instances": [_instance_json(p) for p in plan.placements],
        "free": _free_json(plan) if plan.fits else None,
        "reason": plan.reason,
    }


def _fleet_output(
    b: Board, demand: Mapping[GiProfile, int], layouts: list[list[Placement]], fmt: str, name: str
) -> str:
    if fmt == "mig-parted":
        return _parted_yaml(b, layouts, name, fleet=True)
    plans = [place(b, [p.profile for p in layout]) for layout in layouts]
    if fmt == "json":
        doc = {
            "gpu": b.key,
            "gpus": len(layouts),
            "demand": {p.name: n for p, n in demand.items()},
            "layouts": [
                {"instances": [_instance_json(p) for p in layout], "free": _free_json(plan)}
                for layout, plan in zip(layouts, plans, strict=True)
            ],
        }
        return json.dumps(doc, indent=2) + "\n"
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, layout in enumerate(layouts):
        groups.setdefault(tuple(map(str, layout)), []).append(i)
    lines = [f"{_summary(demand)} on {b.title} ({b.key}): {len(layouts)} GPUs, the fewest possible", ""]
    for key, indexes in groups.items():
        plan = plans[indexes[0]]
        gpus = "GPU " + _ranges(indexes) if len(indexes) > 1 else f"GPU {indexes[0]}"
        lines.append(f"{len(indexes)} x  {' + '.join(key)}   ({gpus})")
        lines += _slice_map(plan.placements)
        lines.append(f"   free: {_free_text(plan)}")
        lines.append("")
    return "\n".join(lines)


def _ranges(indexes: list[int]) -> str:
    """0,1,2,5 -> '0-2, 5'."""
    out: list[str] = []
    start = prev = indexes[0]
    for i in [*indexes[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(out)


# --- text ----------------------------------------------------------------------------------------------


def _summary(demand: Mapping[GiProfile, int]) -> str:
    return " + ".join(p.name if n == 1 else f"{n}x{p.name}" for p, n in demand.items())


def _row(placements: Sequence[Placement], slices: int, compute: bool) -> str:
    cells: list[str] = []
    by_start = {p.start: p for p in placements}
    i = 0
    while i < slices:
        p = by_start.get(i)
        span = 0 if p is None else min(p.profile.compute_slices if compute else p.profile.memory_slices, slices - i)
        if p is None or span == 0:
            cells.append("·".center(_CELL))
            i += 1
            continue
        width = span * _CELL - 2
        name = p.profile.name if len(p.profile.name) <= width else p.profile.name[: width - 1] + "…"
        cells.append("[" + name.center(width) + "]")
        i += span
    return "".join(cells)


def _slice_map(placements: Sequence[Placement]) -> list[str]:
    """The compute row over the memory row; column i is slice i, `·` a free slice."""
    head = "".join(str(i).center(_CELL) for i in range(MEMORY_SLICES))
    rows = [
        f"   {'slice':<8}{head}",
        f"   {'compute':<8}{_row(placements, COMPUTE_SLICES, True)}",
        f"   {'memory':<8}{_row(placements, MEMORY_SLICES, False)}",
    ]
    return [row.rstrip() for row in rows]


def _free_text(plan: Plan) -> str:
    still = ", ".join(p.name for p in plan.still_fits) or "nothing more fits"
    return (
        f"{plan.free_compute_slices}/{COMPUTE_SLICES} compute and {plan.free_memory_slices}/{MEMORY_SLICES} "
        f"memory slices; still fits: {still}"
    )


def _plan_text(plan: Plan, demand: Mapping[GiProfile, int]) -> str:
    b = plan.board
    lines = [f"{_summary(demand)} fits {b.title} ({b.key})", ""]
    lines += _slice_map(plan.placements)
    lines.append("")
    for p in sorted(plan.placements, key=lambda p: p.start):
        pr = p.profile
        lines.append(
            f"   {pr.name:<12} start {p.start}  size {pr.memory_slices}   "
            f"{pr.compute_slices} compute / {pr.memory_slices} memory slices, {pr.sms} SMs, {pr.memory_gib:.2f} GiB"
        )
    used_c = COMPUTE_SLICES - plan.free_compute_slices
    used_m = MEMORY_SLICES - plan.free_memory_slices
    lines += ["", f"used: {used_c}/{COMPUTE_SLICES} compute, {used_m}/{MEMORY_SLICES} memory slices"]
    lines.append(f"free: {_free_text(plan)}")
    return "\n".join(lines) + "\n"


# --- mig-parted ----------------------------------------------------------------------------------------


def _parted_yaml(b: Board, layouts: Sequence[Sequence[Placement]], name: str, *, fleet: bool = False) -> str:
    doc = mig_parted_config(b, layouts, name)
    header = [
        f"# nvidia-mig-parted config for {b.title} ({b.key}); apply with: nvidia-mig-parted apply -f FILE -c {name}",
        *(f"# {line}" for line in textwrap.wrap(f"Note: {PLACEMENT_NOTE}.", 100)),
    ]
    if fleet and len(layouts) > 1:
        header.append("# Device indexes number the fleet's GPUs; give each node the entries of its own GPUs.")
    return "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
