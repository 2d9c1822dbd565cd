"""The review's charts as inline SVG (no dependencies): activity heatmap, waste by profile, slice maps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from exporter.mig.svg import SliceBox, slice_map_svg
from exporter.report.review import InstanceResult, NodePlan, Review
from exporter.report.stats import Grid

_LOW = (0xF7, 0xFB, 0xFF)  # activity 0
_HIGH = (0x08, 0x30, 0x6B)  # activity 1
_NO_DATA = "#e0e0e0"
_ACTION_INK = {"keep": "#102a43", "resize": "#b35900", "reclaim": "#c62828", "time-share": "#1f5fa8"}
_FONT = 'font-family="sans-serif" font-size="11"'


def _shade(value: float) -> str:
    v = min(max(value, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * v) for lo, hi in zip(_LOW, _HIGH, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _svg_open(width: float, height: float, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" width="{width:g}" '
        f'height="{height:g}" role="img" aria-label="{escape(label)}" {_FONT}><title>{escape(label)}</title>'
    )


def _row_label(inst: InstanceResult) -> str:
    return f"{inst.key.node} GPU {inst.key.gpu} gi {inst.key.gi} {inst.key.profile}"


def heatmap_svg(instances: Sequence[InstanceResult], grid: Grid, width: int = 720) -> str:
    """One row per instance, one column per time bucket, shaded by mean activity; reclaim rows in red."""
    label_w, row_h, top, bottom = 300, 14, 8, 46
    columns = grid.columns
    cell = width / columns
    height = top + row_h * len(instances) + bottom
    out = [_svg_open(label_w + width + 10, height, "activity heatmap per GPU instance")]
    for row, inst in enumerate(instances):
        y = top + row * row_h
        action = inst.recommendation.action
        out.append(
            f'<text x="{label_w - 6}" y="{y + row_h - 3}" text-anchor="end" fill="{_ACTION_INK[action]}">'
            f"{escape(_row_label(inst))}</text>"
        )
        heat = inst.summary.heat if inst.summary else (None,) * columns
        out.append(f'<g class="heat-row"><title>{escape(_row_label(inst))}: {action}</title>')
        start = 0
        for col in range(1, columns + 1):
            if col < columns and _colour(heat[col]) == _colour(heat[start]):
                continue
            x = label_w + start * cell
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{(col - start) * cell:.1f}" height="{row_h - 1}" '
                f'fill="{_colour(heat[start])}"/>'
            )
            start = col
        out.append("</g>")
    axis_y = top + row_h * len(instances) + 4
    out.extend(_time_axis(grid, label_w, width, axis_y))
    out.extend(_legend(label_w + width - 200, axis_y + 22))
    out.append("</svg>")
    return "".join(out)


def _colour(value: float | None) -> str:
    return _NO_DATA if value is None else _shade(round(value, 2))


def _time_axis(grid: Grid, left: float, width: float, y: float) -> list[str]:
    span = grid.end - grid.start
    day = 86400.0
    every = day * max(1, round(span / day / 10)) if span >= 2 * day else 3600.0 * max(1, round(span / 3600 / 10))
    first = (grid.start // every + 1) * every
    out = []
    t = first
    while t <= grid.end:
        x = left + (t - grid.start) / span * width if span else left
        text = datetime.fromtimestamp(t, UTC).strftime("%m-%d" if every >= day else "%H:%M")
        out.append(f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x:.1f}" y2="{y + 2}" stroke="#555"/>')
        out.append(f'<text x="{x:.1f}" y="{y + 14}" text-anchor="middle" fill="#333">{text}</text>')
        t += every
    return out


def _legend(x: float, y: float) -> list[str]:
    out = [f'<text x="{x - 6}" y="{y + 9}" text-anchor="end" fill="#333">activity 0%</text>']
    for i in range(20):
        out.append(f'<rect x="{x + i * 8}" y="{y}" width="8" height="10" fill="{_shade(i / 19)}"/>')
    out.append(f'<text x="{x + 166}" y="{y + 9}" fill="#333">100%</text>')
    return out


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
    out = [_svg_open(label_w + width + 230, height, "compute slices held and used, by profile")]
    for row, name in enumerate(names):
        y = top + row * row_h
        full = held[name] / most * width
        busy = used[name] / most * width
        idle_share = 1 - used[name] / held[name] if held[name] else 0.0
        out.append(f'<g class="waste-bar"><title>{escape(name)}: {idle_share:.0%} of its compute idle</title>')
        out.append(f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{escape(name)} x{count[name]}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 4}" width="{full:.1f}" height="16" fill="#f4c7c3"/>')
        out.append(f'<rect x="{label_w}" y="{y + 4}" width="{busy:.1f}" height="16" fill="#2171b5"/>')
        out.append(
            f'<text x="{label_w + full + 6:.1f}" y="{y + 16}">{held[name]:g} slices, {used[name]:.1f} used '
            f"({idle_share:.0%} idle)</text></g>"
        )
    legend_y = top + row_h * len(names) + 8
    out.append(f'<rect x="{label_w}" y="{legend_y}" width="12" height="12" fill="#2171b5"/>')
    out.append(f'<text x="{label_w + 16}" y="{legend_y + 10}">used (mean activity x slices)</text>')
    out.append(f'<rect x="{label_w + 220}" y="{legend_y}" width="12" height="12" fill="#f4c7c3"/>')
    out.append(f'<text x="{label_w + 236}" y="{legend_y + 10}">held but idle</text>')
    out.append("</svg>")
    return "".join(out)


def _today_label(inst: InstanceResult) -> str:
    rec = inst.recommendation
    return f"{inst.key.profile} > {rec.profile}" if rec.action == "resize" else inst.key.profile


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
        maps.append(slice_map_svg(plan.board, boxes, title=f"{plan.node} GPU {gpu} today"))
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
        maps.append(slice_map_svg(plan.board, boxes, title=f"{plan.node} GPU {index} recommended"))
    return maps
