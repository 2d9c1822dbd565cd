"""The capacity review: right-size every instance, then pack what is kept into the fewest GPUs per node.

Packing is per node and board (an instance cannot move to another machine's GPU by
re-partitioning alone) and, for comparison, fleet-wide per board (if workloads can be
rescheduled anywhere). Every proposed GPU layout is checked against the placement rules.
Shards of nodes are reviewed as they arrive (ReviewBuilder.add) and only their results are
kept; the order they arrive in does not change the review.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporter.mig.catalog import Board, GiProfile, UnknownProfileError
from exporter.mig.parted import mig_parted_config
from exporter.mig.placement import Placement, validate_layout
from exporter.mig.planner import pack
from exporter.report.collect import InstanceSeen, Provenance, ShardHistory
from exporter.report.rightsize import Policy, Recommendation, recommend, unassessed
from exporter.report.stats import Grid, InstanceKey, Summary, label_number


@dataclass(frozen=True, slots=True)
class InstanceResult:
    """One GPU instance today: what it did over the window and what to do with it."""

    key: InstanceKey
    board: Board | None
    profile: GiProfile | None  # None when the board or profile is unknown to the catalog
    placement_start: int | None
    memory_total_bytes: float
    pods: tuple[str, ...]
    summary: Summary | None  # None when the window holds no activity for it
    recommendation: Recommendation

    @property
    def target(self) -> GiProfile | None:
        """The profile it should have; None when it should be reclaimed."""
        rec = self.recommendation
        if rec.action == "reclaim" or self.board is None or rec.profile is None:
            return None
        return self.board.profile(rec.profile)


@dataclass(frozen=True, slots=True)
class NodePlan:
    """The GPUs of one board on one node: today's layout and the packed recommendation."""

    node: str
    board: Board
    gpus_today: tuple[str, ...]  # GPU indexes with MIG enabled
    today: dict[str, tuple[InstanceResult, ...]]  # by GPU index
    recommended: tuple[tuple[tuple[Placement, InstanceResult], ...], ...]  # one entry per GPU
    mig_parted: dict[str, Any] | None  # None when no GPU needs MIG instances any more

    @property
    def config_name(self) -> str:
        return _config_name(self.node, self.board)


@dataclass(frozen=True, slots=True)
class FleetBoard:
    """Fleet-wide figures for one board."""

    board: Board
    gpus_today: int
    gpus_per_node: int  # sum of the per-node packings
    gpus_fleet_wide: int  # packing every kept instance of this board as if they could move between nodes


@dataclass(frozen=True, slots=True)
class Review:
    """Everything the renderers show."""

    url: str
    grid: Grid
    policy: Policy
    provenance: Provenance | None
    instances: tuple[InstanceResult, ...]  # present at the end of the window
    gone: tuple[InstanceKey, ...]  # seen earlier in the window, no longer there (re-partitioned)
    nodes: tuple[NodePlan, ...]
    fleet: tuple[FleetBoard, ...]
    unplanned_gpus: tuple[str, ...]  # notes on GPUs left out of packing (MIG disabled, unknown model)

    @property
    def gpus_today(self) -> int:
        return sum(len(n.gpus_today) for n in self.nodes)

    @property
    def gpus_recommended(self) -> int:
        return sum(len(n.recommended) for n in self.nodes)

    @property
    def compute_slices_today(self) -> int:
        return sum(i.profile.compute_slices for i in self.instances if i.profile)

    @property
    def compute_slices_recommended(self) -> int:
        return sum(t.compute_slices for i in self.instances if i.profile and (t := i.target))

    @property
    def memory_slices_today(self) -> int:
        return sum(i.profile.memory_slices for i in self.instances if i.profile)

    @property
    def memory_slices_recommended(self) -> int:
        return sum(t.memory_slices for i in self.instances if i.profile and (t := i.target))

    @property
    def energy_kwh(self) -> float | None:
        """Estimated energy of the instances present over the window; None where the energy rule is not loaded."""
        known = [e for i in self.instances if i.summary and (e := i.summary.energy_kwh) is not None]
        return sum(known) if known else None

    @property
    def idle_energy_share(self) -> float | None:
        """The share of that energy spent by idle instances (p95 activity below the idle threshold)."""
        total = self.energy_kwh
        if not total:
            return None
        idle = sum(i.summary.energy_kwh or 0.0 for i in self.instances if i.summary and i.summary.p95_idle)
        return idle / total


def _config_name(node: str, board: Board) -> str:
    return f"{re.sub(r'[^A-Za-z0-9.-]+', '-', node).strip('-') or 'node'}-{board.key}-right-sized"


def _result(seen: InstanceSeen, board: Board | None, policy: Policy, columns: int) -> InstanceResult:
    profile = None
    if board is not None:
        try:
            profile = board.profile(seen.key.profile)
        except UnknownProfileError:
            profile = None
    summary = seen.tally.summary(columns)
    if profile is None or board is None:
        rec = unassessed(seen.key.profile, "catalog", "GPU model or profile not in the MIG catalog: not right-sized")
    elif summary is None:
        rec = unassessed(seen.key.profile, "no data", "no activity data in the window")
    else:
        rec = recommend(summary, profile, board, policy)
    return InstanceResult(
        seen.key,
        board,
        profile,
        seen.placement_start,
        seen.memory_total_bytes,
        tuple(sorted(seen.pods)),
        summary,
        rec,
    )


def _assign(
    layouts: Sequence[Sequence[Placement]], kept: Sequence[InstanceResult]
) -> tuple[tuple[tuple[Placement, InstanceResult], ...], ...]:
    """Give each placement of the packed layouts one kept instance of that profile, in today's order."""
    queues: dict[str, list[InstanceResult]] = defaultdict(list)
    for inst in sorted(kept, key=lambda i: i.key.sort_key()):
        target = inst.target
        assert target is not None
        queues[target.name].append(inst)
    out = []
    for layout in layouts:
        out.append(tuple((p, queues[p.profile.name].pop(0)) for p in sorted(layout, key=lambda p: p.start)))
    return tuple(out)


def _gpu_order(where: tuple[str, str]) -> tuple[str, int]:
    return (where[0], label_number(where[1], -1))


class ReviewBuilder:
    """Reviews shards of nodes as they arrive; `finish` sorts and packs fleet-wide."""

    def __init__(self, grid: Grid, policy: Policy, *, heat: bool = False) -> None:
        self.grid = grid
        self.policy = policy
        self.columns = grid.columns if heat else 0
        self.results: list[InstanceResult] = []
        self.gone: list[InstanceKey] = []
        self.nodes: list[NodePlan] = []
        self.notes: list[tuple[tuple[str, int], str]] = []
        self.boards: dict[str, Board] = {}
        self.fleet_demand: dict[str, list[GiProfile]] = defaultdict(list)
        self.fleet_today: dict[str, int] = defaultdict(int)
        self.fleet_per_node: dict[str, int] = defaultdict(int)

    def add(self, history: ShardHistory) -> None:
        """Right-size the shard's instances present at the end of the window and pack them per node."""
        results: list[InstanceResult] = []
        for key in sorted(history.instances, key=InstanceKey.sort_key):
            seen = history.instances[key]
            gpu = history.gpus.get((key.node, key.gpu))
            if not seen.present:
                self.gone.append(key)
                continue
            results.append(_result(seen, gpu.board if gpu else None, self.policy, self.columns))
        self.results.extend(results)
        by_gpu: dict[tuple[str, str], list[InstanceResult]] = defaultdict(list)
        for inst in results:
            by_gpu[(inst.key.node, inst.key.gpu)].append(inst)

        groups: dict[tuple[str, str], list[str]] = defaultdict(list)  # (node, board key) -> GPU indexes
        for where, gpu in sorted(history.gpus.items(), key=lambda kv: _gpu_order(kv[0])):
            if not gpu.present:
                continue
            if not gpu.mig_enabled:
                self.notes.append(
                    (
                        _gpu_order(where),
                        f"{where[0]} GPU {where[1]} ({gpu.model}): MIG disabled, not part of the review",
                    )
                )
            elif gpu.board is None:
                self.notes.append(
                    (
                        _gpu_order(where),
                        f"{where[0]} GPU {where[1]} ({gpu.model}): not in the MIG catalog, "
                        "its instances are kept as-is",
                    )
                )
            else:
                self.boards[gpu.board.key] = gpu.board
                groups[(where[0], gpu.board.key)].append(where[1])
        for where in sorted(by_gpu, key=_gpu_order):
            gpu = history.gpus.get(where)
            if gpu is None or not gpu.present:
                self.notes.append(
                    (
                        _gpu_order(where),
                        f"{where[0]} GPU {where[1]}: no mig_gpu_info at the end of the window, its instances are kept",
                    )
                )

        for (node, board_key), indexes in sorted(groups.items()):
            board = self.boards[board_key]
            today = {i: tuple(by_gpu.get((node, i), ())) for i in indexes}
            kept = [inst for i in indexes for inst in today[i] if inst.target is not None]
            demand = [t for inst in kept if (t := inst.target) is not None]
            layouts = pack(board, demand)
            for layout in layouts:
                validate_layout(board, layout)  # the planner's answer, checked against the placement rules
            recommended = _assign(layouts, kept)
            config = mig_parted_config(board, layouts, _config_name(node, board)) if layouts else None
            self.nodes.append(NodePlan(node, board, tuple(indexes), today, recommended, config))
            self.fleet_demand[board_key].extend(demand)
            self.fleet_today[board_key] += len(indexes)
            self.fleet_per_node[board_key] += len(layouts)

    def finish(self, url: str, provenance: Provenance | None = None) -> Review:
        """The review of every shard added, in a fixed order whatever order they came in."""
        fleet = tuple(
            FleetBoard(b, self.fleet_today[k], self.fleet_per_node[k], len(pack(b, self.fleet_demand[k])))
            for k, b in sorted(self.boards.items())
        )
        return Review(
            url,
            self.grid,
            self.policy,
            provenance,
            tuple(sorted(self.results, key=lambda i: i.key.sort_key())),
            tuple(sorted(self.gone, key=InstanceKey.sort_key)),
            tuple(sorted(self.nodes, key=lambda n: (n.node, n.board.key))),
            fleet,
            tuple(note for _, note in sorted(self.notes)),
        )
