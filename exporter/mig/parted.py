"""nvidia-mig-parted config documents for planned layouts.

mig-parted's `mig-devices` is a count of each profile per device: it creates the instances and lets the
driver choose their placements, so the starts the planner chose are not pinned. A layout the planner
accepts can in principle be created in some order the driver rejects; `mig-exporter plan` says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from exporter.mig.catalog import Board
from exporter.mig.placement import Placement

PLACEMENT_NOTE = (
    "mig-parted applies mig-devices as profile counts per GPU and lets the driver choose placements; "
    "the starts shown by `mig-exporter plan` are not pinned"
)


def _mig_devices(board: Board, layout: Sequence[Placement]) -> dict[str, int]:
    """Profile counts of one GPU's layout, largest profile first."""
    counts = Counter(p.profile.name for p in layout)
    return {p.name: counts[p.name] for p in reversed(board.profiles) if counts[p.name]}


def mig_parted_config(board: Board, layouts: Sequence[Sequence[Placement]], name: str) -> dict[str, Any]:
    """A mig-parted config document (`version: v1`) whose `mig-configs` holds one entry, `name`.

    GPU i of `layouts` is device index i; GPUs with the same profile counts share one entry. When every
    GPU has the same counts the entry says `devices: all`, so it applies to a node of any size.
    """
    if not name.strip():
        raise ValueError("a mig-parted config name must not be empty")
    groups: dict[tuple[tuple[str, int], ...], list[int]] = {}
    for index, layout in enumerate(layouts):
        for p in layout:
            board.profile(p.profile.name)  # raises UnknownProfileError for another board's profile
        groups.setdefault(tuple(_mig_devices(board, layout).items()), []).append(index)
    entries: list[dict[str, Any]] = []
    for devices_key, indexes in groups.items():
        entries.append(
            {
                "devices": "all" if len(groups) == 1 else indexes,
                "mig-enabled": True,
                "mig-devices": dict(devices_key),
            }
        )
    if not entries:
        raise ValueError("a mig-parted config needs at least one GPU layout")
    return {"version": "v1", "mig-configs": {name: entries}}
