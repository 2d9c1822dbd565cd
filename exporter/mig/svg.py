"""SVG slice maps of one GPU: a row of 7 compute slices over a row of 8 memory slices.

Column i of both rows is slice i, so an instance at memory start s covers compute slices s.. and memory
slices s..; memory slice 7 has no compute slice above it. Boxes are shaded by a value in 0..1 (activity)
on the ACTIVITY scale; idle ones are hatched and outlined in red, with haloed labels that stay readable
on the stripes. Compute instances are drawn inside their GPU instance's compute row. Free slices are
dashed cells. Labels are shown only where they fit their box; every box's tooltip has them all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.mig.catalog import COMPUTE_SLICES, MEMORY_SLICES, Board
from exporter.svg import Canvas, ColourScale, drawing, scale_legend, text_width
from exporter.units import percent

ACTIVITY = ColourScale((0xDE, 0xEB, 0xF7), (0x08, 0x45, 0x94))  # value 0 light blue, value 1 dark blue
NEUTRAL = "#9ecae1"  # a box without a value
IDLE_INK, IDLE_STROKE = "#8a1c1c", "#d62728"

CELL = 50  # width of one slice column: room for "1g.10gb" at 10 px
ROW = 38  # height of one row: room for two lines of labels
LEFT = 50  # room for the row labels
TOP = 24  # room for the title
GAP = 4
FONT = 11  # labels; 10 px where 11 does not fit
WIDTH = LEFT + MEMORY_SLICES * CELL + 2
HEIGHT = TOP + 2 * ROW + GAP + 4
_HALO = {"stroke": "#ffffff", "stroke_width": 3, "stroke_linejoin": "round", "paint_order": "stroke"}


@dataclass(frozen=True, slots=True)
class ComputeBox:
    """A compute instance, drawn inside its GPU instance's compute row."""

    label: str  # e.g. "CI 0"
    compute_slices: int
    value: float | None = None
    tooltip: str = ""  # more for the hover text (who holds it)


@dataclass(frozen=True, slots=True)
class SliceBox:
    """One GPU instance on the map: where it sits, its size, a label and an optional value in 0..1."""

    start: int  # first memory slice (also its first compute slice)
    memory_slices: int
    compute_slices: int
    label: str
    value: float | None = None
    idle: bool = False
    detail: str = ""  # a second line where the box is wide enough (e.g. its memory in use)
    compute_instances: tuple[ComputeBox, ...] = ()  # drawn when there are several, or one smaller than the GI
    tooltip: str = ""  # more for the hover text (who holds it)

    @property
    def tip(self) -> str:
        lines = [
            self.label + ("" if self.value is None else f": {percent(self.value)}") + (" (idle)" if self.idle else "")
        ]
        return "\n".join([*lines, *(t for t in (self.detail, self.tooltip) if t)])


def _map(title: str, key: str) -> tuple[Canvas, str]:
    """An empty map: title, row labels, the hatch for idle boxes; returns it and the hatch's fill."""
    svg = drawing(WIDTH, HEIGHT, title, font_size=FONT)
    hatch = svg.hatch(f"mig-idle-hatch{key}", "#fff1f0", "#f4a6a0")
    svg.text(2, 16, title, font_size=13, font_weight="bold")
    svg.text(2, TOP + ROW / 2 + 4, "compute", font_size=10, fill="#486581")
    svg.text(2, TOP + ROW + GAP + ROW / 2 + 4, "memory", font_size=10, fill="#486581")
    return svg, hatch


def slice_map_svg(board: Board, boxes: Sequence[SliceBox], *, title: str | None = None, key: str = "") -> str:
    """The slice map of one GPU of `board` with `boxes` drawn on it, as an SVG document string.

    `key` makes the document's ids unique where several maps share one HTML page.
    """
    for box in boxes:
        if not (box.start >= 0 and box.start + box.memory_slices <= MEMORY_SLICES):
            raise ValueError(f"{box.label}: memory slices {box.start}..{box.start + box.memory_slices - 1} off the map")
        if box.start + box.compute_slices > COMPUTE_SLICES:
            raise ValueError(f"{box.label}: compute slices past slice {COMPUTE_SLICES - 1}")
    svg, hatch = _map(title if title is not None else board.title, key)
    compute_y, memory_y = TOP, TOP + ROW + GAP
    for i in range(COMPUTE_SLICES):
        _free_cell(svg, LEFT + i * CELL, compute_y)
    for i in range(MEMORY_SLICES):
        _free_cell(svg, LEFT + i * CELL, memory_y)
    for box in boxes:
        _box(svg, box, hatch)
    return svg.to_string()


def whole_gpu_svg(title: str, label: str, value: float | None, detail: str = "") -> str:
    """A GPU with MIG disabled, drawn at the size of a slice map: one box over both rows, shaded by `value`."""
    svg = drawing(WIDTH, HEIGHT, title, font_size=FONT)
    svg.text(2, 16, title, font_size=13, font_weight="bold")
    width, height = WIDTH - 4, 2 * ROW + GAP - 4
    group = svg.group(label if value is None else f"{label}: {percent(value)}", class_="mig-whole")
    fill = NEUTRAL if value is None else ACTIVITY.fill(value)
    ink = "#102a43" if value is None else ACTIVITY.ink(value)
    group.rect(2, TOP + 2, width, height, fill=fill, stroke="#334e68", stroke_width=2, rx=4)
    lines = [label, " · ".join(t for t in (percent(value) if value is not None else "", detail) if t)]
    for i, line in enumerate(t for t in lines if t):
        group.text(2 + width / 2, TOP + height / 2 - 2 + i * 16, line, text_anchor="middle", fill=ink, font_size=13)
    return svg.to_string()


def activity_legend_svg(idle_meaning: str) -> str:
    """The key to the maps: the activity scale, the idle hatch (with what idle means) and a free slice."""
    idle_text = f"idle: {idle_meaning}"
    bar_end = text_width("activity", FONT) + 6 + 150
    idle_x = bar_end + 22
    free_x = idle_x + 32 + text_width(idle_text, FONT) + 18
    svg = drawing(free_x + 32 + text_width("free slice", FONT) + 4, 30, "legend of the slice maps", font_size=FONT)
    hatch = svg.hatch("mig-legend-hatch", "#fff1f0", "#f4a6a0")
    scale_legend(svg, 0, 4, ACTIVITY, width=150, label="activity")
    svg.rect(idle_x, 2, 26, 14, fill=hatch, stroke=IDLE_STROKE, stroke_width=1.5, stroke_dasharray="4 2", rx=2)
    svg.text(idle_x + 32, 13, idle_text, fill=IDLE_INK)
    svg.rect(free_x, 2, 26, 14, fill="#ffffff", stroke="#bbbbbb", stroke_dasharray="4 3")
    svg.text(free_x + 32, 13, "free slice", fill="#333")
    return svg.to_string()


def _free_cell(svg: Canvas, x: float, y: float) -> None:
    svg.rect(x + 2, y + 2, CELL - 4, ROW - 4, fill="#ffffff", stroke="#bbbbbb", stroke_dasharray="4 3")


def _fits(
    candidates: Sequence[str], width: float, sizes: Sequence[float] = (FONT, FONT - 1)
) -> tuple[str, float] | None:
    """The first of `candidates` that fits `width` (with a little margin) at one of `sizes`, and that size."""
    return next(((c, z) for c in candidates if c for z in sizes if text_width(c, z) <= width - 4), None)


def _short(label: str) -> str:
    """A profile-based label without the memory sizes: "1g.10gb+me" -> "1g+me", "3g.40gb > 1g.10gb" -> "3g > 1g"."""
    return re.sub(r"\.\d+gb", "", label)


def _box(svg: Canvas, box: SliceBox, hatch: str) -> None:
    fill = NEUTRAL if box.value is None else ACTIVITY.fill(box.value)
    ink = "#102a43" if box.value is None else ACTIVITY.ink(box.value)
    style: dict[str, object] = {"fill": fill, "stroke": "#334e68", "stroke_width": 2, "rx": 4}
    halo: dict[str, object] = {}
    if box.idle:
        style |= {"fill": hatch, "stroke": IDLE_STROKE, "stroke_dasharray": "6 3"}
        ink, halo = IDLE_INK, _HALO
    group = svg.group(box.tip, class_="mig-box idle" if box.idle else "mig-box")
    x = LEFT + box.start * CELL + 2
    compute_y, memory_y = TOP + 2, TOP + ROW + GAP + 2
    compute_w, memory_w, height = box.compute_slices * CELL - 4, box.memory_slices * CELL - 4, ROW - 4
    if box.compute_slices:
        group.rect(x, compute_y, compute_w, height, **style)
    group.rect(x, memory_y, memory_w, height, **style)
    value = None if box.value is None else percent(box.value)
    lines = [
        _fits([box.label, _short(box.label)], memory_w),
        _fits([f"{value} · {box.detail}" if value and box.detail else "", box.detail, value or ""], memory_w),
    ]
    shown = [line for line in lines if line is not None]
    text: dict[str, object] = {"text_anchor": "middle", "fill": ink, **halo}
    for i, (line, size) in enumerate(shown):
        offset = 4 if len(shown) == 1 else (-3, 11)[i]
        group.text(x + memory_w / 2, memory_y + height / 2 + offset, line, font_size=size, **text)
    parts = box.compute_instances
    if len(parts) > 1 or (parts and parts[0].compute_slices < box.compute_slices):
        _compute_instances(group, box, x, compute_y, idle=box.idle)
    elif box.idle and _fits(["idle"], compute_w):
        group.text(x + compute_w / 2, compute_y + height / 2 + 4, "idle", font_weight="bold", **text)


def _compute_instances(group: Canvas, box: SliceBox, x: float, y: float, *, idle: bool) -> None:
    """Each compute instance as a box inside the GPU instance's compute row, as wide as its compute slices."""
    inner_w = box.compute_slices * CELL - 4 - 6
    unit = inner_w / max(sum(c.compute_slices for c in box.compute_instances), box.compute_slices)
    left, height = x + 3, ROW - 10
    for ci in box.compute_instances:
        width = ci.compute_slices * unit - 2
        value = None if ci.value is None else percent(ci.value)
        tip = "\n".join(t for t in (f"{ci.label}: {value}" if value else ci.label, ci.tooltip) if t)
        part = group.group(tip, class_="mig-ci")
        if idle:  # the GPU instance's hatch shows through
            part.rect(left, y + 3, width, height, fill="none", stroke=IDLE_STROKE, stroke_width=1, rx=3)
            ink, halo = IDLE_INK, _HALO
        else:
            fill = NEUTRAL if ci.value is None else ACTIVITY.fill(ci.value)
            part.rect(left, y + 3, width, height, fill=fill, stroke="#ffffff", stroke_width=1.5, rx=3)
            ink, halo = ("#102a43" if ci.value is None else ACTIVITY.ink(ci.value)), {}
        fitted = _fits([f"{ci.label} · {value}" if value else ci.label, value or "", ci.label], width, (10,))
        if fitted:
            centre, middle = left + width / 2, y + 3 + height / 2 + 4
            part.text(centre, middle, fitted[0], text_anchor="middle", fill=ink, font_size=10, **halo)
        left += width + 2
