"""A self-contained SVG slice map of one GPU: a row of 7 compute slices over a row of 8 memory slices.

Column i of both rows is slice i, so an instance at memory start s covers compute slices s.. and memory
slices s..; memory slice 7 has no compute slice above it. Boxes can be shaded by a value in 0..1 (for
example activity); idle ones are hatched and outlined in red. Free slices are drawn as dashed cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from exporter.mig.catalog import COMPUTE_SLICES, MEMORY_SLICES, Board

_CELL = 76  # width of one slice column
_ROW = 40  # height of one row
_LEFT = 84  # room for the row labels
_TOP = 34  # room for the title
_GAP = 6
_LOW = (0xDE, 0xEB, 0xF7)  # value 0
_HIGH = (0x08, 0x45, 0x94)  # value 1
_NEUTRAL = "#9ecae1"  # no value given


@dataclass(frozen=True, slots=True)
class SliceBox:
    """One GPU instance on the map: where it sits, its size, a label and an optional value in 0..1."""

    start: int  # first memory slice (also its first compute slice)
    memory_slices: int
    compute_slices: int
    label: str
    value: float | None = None
    idle: bool = False


def _fill(value: float | None) -> tuple[str, str]:
    """Fill and text colors for a value (clamped to 0..1) on a light-to-dark blue scale."""
    if value is None:
        return _NEUTRAL, "#102a43"
    v = min(max(value, 0.0), 1.0)
    rgb = (round(lo + (hi - lo) * v) for lo, hi in zip(_LOW, _HIGH, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb), "#ffffff" if v > 0.5 else "#102a43"


def _rect(x: float, y: float, w: float, h: float, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}"{extra}/>'


def _text(x: float, y: float, content: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f'<text x="{x:g}" y="{y:g}"{extra}>{escape(content)}</text>'


def slice_map_svg(board: Board, boxes: Sequence[SliceBox], *, title: str | None = None) -> str:
    """The slice map of one GPU of `board` with `boxes` drawn on it, as an SVG document string."""
    for box in boxes:
        if not (box.start >= 0 and box.start + box.memory_slices <= MEMORY_SLICES):
            raise ValueError(f"{box.label}: memory slices {box.start}..{box.start + box.memory_slices - 1} off the map")
        if box.start + box.compute_slices > COMPUTE_SLICES:
            raise ValueError(f"{box.label}: compute slices past slice {COMPUTE_SLICES - 1}")
    heading = title if title is not None else board.title
    width = _LEFT + MEMORY_SLICES * _CELL + 8
    height = _TOP + 2 * _ROW + _GAP + 8
    compute_y, memory_y = _TOP, _TOP + _ROW + _GAP
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(heading)}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(heading)}</title>",
        '<defs><pattern id="mig-idle-hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="8" height="8" fill="#fdecea"/>'
        '<line x1="0" y1="0" x2="0" y2="8" stroke="#d62728" stroke-width="3"/></pattern></defs>',
        _text(4, 20, heading, font_size="14", font_weight="bold"),
        _text(4, compute_y + _ROW / 2 + 4, f"compute ({COMPUTE_SLICES})"),
        _text(4, memory_y + _ROW / 2 + 4, f"memory ({MEMORY_SLICES})"),
    ]
    for i in range(COMPUTE_SLICES):
        out.append(_free_cell(_LEFT + i * _CELL, compute_y))
    for i in range(MEMORY_SLICES):
        out.append(_free_cell(_LEFT + i * _CELL, memory_y))
    for box in boxes:
        out.append(_box(box, compute_y, memory_y))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _free_cell(x: float, y: float) -> str:
    return _rect(x + 2, y + 2, _CELL - 4, _ROW - 4, fill="#ffffff", stroke="#bbbbbb", stroke_dasharray="4 3")


def _box(box: SliceBox, compute_y: float, memory_y: float) -> str:
    fill, ink = _fill(box.value)
    stroke, dash = "#334e68", "none"
    if box.idle:
        fill, ink, stroke, dash = "url(#mig-idle-hatch)", "#8a1c1c", "#d62728", "6 3"
    tip = box.label + ("" if box.value is None else f": {box.value:.0%}") + (" (idle)" if box.idle else "")
    x = _LEFT + box.start * _CELL + 2
    style = {"fill": fill, "stroke": stroke, "stroke_width": "2", "stroke_dasharray": dash, "rx": "4"}
    parts = [f'<g class="{"mig-box idle" if box.idle else "mig-box"}">', f"<title>{escape(tip)}</title>"]
    if box.compute_slices:
        parts.append(_rect(x, compute_y + 2, box.compute_slices * _CELL - 4, _ROW - 4, **style))
    parts.append(_rect(x, memory_y + 2, box.memory_slices * _CELL - 4, _ROW - 4, **style))
    centre = x + (box.memory_slices * _CELL - 4) / 2
    if box.value is None:
        parts.append(_text(centre, memory_y + _ROW / 2 + 4, box.label, text_anchor="middle", fill=ink))
    else:
        parts.append(_text(centre, memory_y + _ROW / 2 - 2, box.label, text_anchor="middle", fill=ink))
        parts.append(_text(centre, memory_y + _ROW / 2 + 12, f"{box.value:.0%}", text_anchor="middle", fill=ink))
    if box.idle:
        parts.append(
            _text(
                x + (box.compute_slices * _CELL - 4) / 2,
                compute_y + _ROW / 2 + 4,
                "idle",
                text_anchor="middle",
                fill=ink,
                font_weight="bold",
            )
        )
    parts.append("</g>")
    return "".join(parts)
