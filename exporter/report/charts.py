"""The review's charts as inline SVG (exporter.svg): activity heatmap, waste by profile, slice maps."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from exporter.mig.svg import ACTIVITY, SliceBox, slice_map_svg
from exporter.report.review import InstanceResult, NodePlan, Review
from exporter.report.stats import Grid
from exporter.svg import Canvas, drawing, scale_legend
from exporter.units import percent

_NO_DATA = "#e0e0e0"
_ACTION_INK = {"keep": "#102a43", "resize": "#b35900", "reclaim": "#c62828", "time-share": "#1f5fa8"}
_USED, _HELD = "#2171b5", "#f4c7c3"
_FONT = 11


def _row_label(inst: InstanceResult) -> str:
    return f"{inst.key.node} GPU {inst.key.gpu} gi {inst.key.gi} {inst.key.profile}"


def heatmap_svg(instances: Sequence[InstanceResult], grid: Grid, width: int = 720) -> str:
    """One row per instance, one column per time bucket, shaded by mean activity; reclaim rows in red."""
    label_w, row_h, top, bottom = 300, 14, 8, 46
    columns = grid.columns
    cell = width / columns
    height = top + row_h * len(instances) + bottom
    svg = drawing(label_w + width + 10, height, "activity heatmap per GPU instance", font_size=_FONT)
    for row, inst in enumerate(instances):
        y = top + row * row_h
        action = inst.recommendation.action
        svg.text(label_w - 6, y + row_h - 3, _row_label(inst), text_anchor="end", fill=_ACTION_INK[action])
        heat = inst.summary.heat if inst.summary else (None,) * columns
        cells = svg.group(f"{_row_label(inst)}: {action}", class_="heat-row")
        start = 0
        for col in range(1, columns + 1):  # one rectangle per run of equal colours
            if col < columns and _colour(heat[col]) == _colour(heat[start]):
                continue
            cells.rect(label_w + start * cell, y, (col - start) * cell, row_h - 1, fill=_colour(heat[start]))
            start = col
    axis_y = top + row_h * len(instances) + 4
    _time_axis(svg, grid, label_w, width, axis_y)
    scale_legend(svg, label_w + width - 220, axis_y + 22, ACTIVITY, width=160, ticks=(0.0, 1.0), label="activity")
    return svg.to_string()


def _colour(value: float | None) -> str:
    return _NO_DATA if value is None else ACTIVITY.fill(round(value, 2))


def _time_axis(svg: Canvas, grid: Grid, left: float, width: float, y: float) -> None:
    span = grid.end - grid.start
    day = 86400.0
    every = day * max(1, round(span / day / 10)) if span >= 2 * day else 3600.0 * max(1, round(span / 3600 / 10))
    t = (grid.start // every + 1) * every
    while t <= grid.end:
        x = left + (t - grid.start) / span * width if span else left
        svg.line(x, y - 4, x, y + 2, stroke="#555")
        stamp = datetime.fromtimestamp(t, UTC).strftime("%m-%d" if every >= day else "%H:%M")
        svg.text(x, y + 14, stamp, text_anchor="middle", fill="#333")
        t += every


def waste_svg(review: Review, width: int = 520) -> str:
    """Per profile: compute slices held by its instances, the part used on average, the part idle."""
    held: dict[str, float] = defaultdict(float)
    used: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for inst in review.instances:
        if inst.profile is None or inst.summary is None:
            continue
        held[inst.profile.name] += inst.profile.compute_slices
        used[inst.profile.name] += inst.summary.mean * inst.profile.compute_slices
        count[inst.profile.name] += 1
    names = sorted(held, key=lambda n: -held[n])
    label_w, row_h, top = 110, 26, 8
    most = max(held.values(), default=1.0)
    height = top + row_h * len(names) + 30
    svg = drawing(label_w + width + 230, height, "compute slices held and used, by profile", font_size=_FONT)
    for row, name in enumerate(names):
        y = top + row * row_h
        full = held[name] / most * width
        idle_share = 1 - used[name] / held[name] if held[name] else 0.0
        bar = svg.group(f"{name}: {percent(idle_share)} of its compute idle", class_="waste-bar")
        bar.text(label_w - 6, y + 16, f"{name} x{count[name]}", text_anchor="end")
        bar.rect(label_w, y + 4, full, 16, fill=_HELD)
        bar.rect(label_w, y + 4, used[name] / most * width, 16, fill=_USED)
        bar.text(
            label_w + full + 6, y + 16, f"{held[name]:g} slices, {used[name]:.1f} used ({percent(idle_share)} idle)"
        )
    legend_y = top + row_h * len(names) + 8
    svg.rect(label_w, legend_y, 12, 12, fill=_USED)
    svg.text(label_w + 16, legend_y + 10, "used (mean activity x slices)")
    svg.rect(label_w + 220, legend_y, 12, 12, fill=_HELD)
    svg.text(label_w + 236, legend_y + 10, "held but idle")
    return svg.to_string()


def today_maps(plan: NodePlan) -> list[str]:
    """Today's layout of each GPU: shaded by mean activity, instances to reclaim hatched."""
    maps = []
    for gpu in plan.gpus_today:
        boxes = [
            SliceBox(
                inst.placement_start,
                inst.profile.memory_slices,
                inst.profile.compute_slices,
                inst.profile.name
                + ("" if inst.recommendation.action != "resize" else f" > {inst.recommendation.profile}"),
                inst.summary.mean if inst.summary else None,
                inst.recommendation.action == "reclaim",
            )
            for inst in plan.today[gpu]
            if inst.profile is not None and inst.placement_start is not None
        ]
        maps.append(slice_map_svg(plan.board, boxes, title=f"{plan.node} GPU {gpu} today", key=_key(plan, "t", gpu)))
    return maps


def recommended_maps(plan: NodePlan) -> list[str]:
    """Each recommended GPU: shaded by the activity the moved instance would show on its new size."""
    maps = []
    for index, gpu in enumerate(plan.recommended):
        boxes = []
        for placement, inst in gpu:
            expected = None
            if inst.summary and inst.profile:
                expected = inst.summary.mean * inst.profile.compute_slices / placement.profile.compute_slices
            boxes.append(
                SliceBox(
                    placement.start,
                    placement.profile.memory_slices,
                    placement.profile.compute_slices,
                    placement.profile.name,
                    expected,
                )
            )
        maps.append(
            slice_map_svg(plan.board, boxes, title=f"{plan.node} GPU {index} recommended", key=_key(plan, "r", index))
        )
    return maps


def _key(plan: NodePlan, kind: str, gpu: object) -> str:
    """A suffix that keeps each map's ids unique on the report's page."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"-{plan.node}-{plan.board.key}-{kind}{gpu}")
