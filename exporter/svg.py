"""SVG drawing for the slice maps and the report's charts: a small typed layer over xml.etree.ElementTree.

ElementTree does the escaping; this module adds compact number formatting, SVG's dashed attribute
names (`font_size=12` writes `font-size="12"`), tooltips, a hatch pattern, a colour scale with text
colours that stay readable on it, and a legend for that scale.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
# Character widths in ems, about those of DejaVu Sans (the widest common sans-serif), to tell whether a label fits.
_NARROW, _THIN, _WIDE, _CAPITAL, _USUAL = 0.32, 0.4, 0.96, 0.72, 0.63
_WIDTHS = {
    **dict.fromkeys("il.,:;'!| ·", _NARROW),
    **dict.fromkeys("ftrjI()[]/-", _THIN),
    **dict.fromkeys("mwMW%", _WIDE),
}

Rgb = tuple[int, int, int]


def _value(value: object) -> str:
    """Numbers as short as they can be written (3, 2.5, 0.33); anything else as its text."""
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _attributes(attrs: dict[str, object]) -> dict[str, str]:
    """Keyword arguments as SVG attributes: `class_` is class, underscores become dashes, None is left out."""
    return {k.rstrip("_").replace("_", "-"): _value(v) for k, v in attrs.items() if v is not None}


def text_width(text: str, font_size: float) -> float:
    """About how wide `text` is drawn at `font_size` in a sans-serif font (rather more than less)."""
    return font_size * sum(_WIDTHS.get(c, _CAPITAL if c.isupper() else _USUAL) for c in text)


class Canvas:
    """An SVG element to draw into; what is added later is drawn on top."""

    def __init__(self, element: ET.Element) -> None:
        self.element = element

    def add(self, tag: str, content: str | None = None, /, **attrs: object) -> Canvas:
        child = ET.SubElement(self.element, tag, _attributes(attrs))
        child.text = content
        return Canvas(child)

    def rect(self, x: float, y: float, width: float, height: float, **attrs: object) -> Canvas:
        return self.add("rect", x=x, y=y, width=max(width, 0.0), height=max(height, 0.0), **attrs)

    def text(self, x: float, y: float, content: str, **attrs: object) -> Canvas:
        return self.add("text", content, x=x, y=y, **attrs)

    def line(self, x1: float, y1: float, x2: float, y2: float, **attrs: object) -> Canvas:
        return self.add("line", x1=x1, y1=y1, x2=x2, y2=y2, **attrs)

    def group(self, tooltip: str | None = None, **attrs: object) -> Canvas:
        """A `<g>`; `tooltip` becomes its `<title>`, which browsers show on hover."""
        group = self.add("g", **attrs)
        if tooltip is not None:
            group.add("title", tooltip)
        return group

    def hatch(self, pattern_id: str, background: str, stripe: str, width: float = 2.0) -> str:
        """Define diagonal stripes under `pattern_id`; returns the fill that uses them."""
        defs = self.add("defs")
        pattern = defs.add(
            "pattern",
            id=pattern_id,
            width=8,
            height=8,
            patternUnits="userSpaceOnUse",
            patternTransform="rotate(45)",
        )
        pattern.rect(0, 0, 8, 8, fill=background)
        pattern.line(0, 0, 0, 8, stroke=stripe, stroke_width=width)
        return f"url(#{pattern_id})"

    def to_string(self) -> str:
        return ET.tostring(self.element, encoding="unicode") + "\n"


def drawing(width: float, height: float, label: str, *, font_size: float = 12, **attrs: object) -> Canvas:
    """An empty SVG document of the given size, labelled for screen readers and tooltips."""
    root = Canvas(
        ET.Element(
            "svg",
            _attributes(
                {
                    "xmlns": SVG_NAMESPACE,
                    "viewBox": f"0 0 {_value(float(width))} {_value(float(height))}",
                    "width": float(width),
                    "height": float(height),
                    "role": "img",
                    "aria_label": label,
                    "font_family": "sans-serif",
                    "font_size": font_size,
                    **attrs,
                }
            ),
        )
    )
    root.add("title", label)
    return root


@dataclass(frozen=True, slots=True)
class ColourScale:
    """A linear scale from `low` (value 0) to `high` (value 1); values outside are clamped."""

    low: Rgb
    high: Rgb
    dark_ink: str = "#102a43"
    light_ink: str = "#ffffff"

    def fill(self, value: float) -> str:
        v = min(max(value, 0.0), 1.0)
        r, g, b = (round(lo + (hi - lo) * v) for lo, hi in zip(self.low, self.high, strict=True))
        return f"#{r:02x}{g:02x}{b:02x}"

    def ink(self, value: float) -> str:
        """A text colour readable on `fill(value)`: dark on light fills, light on dark ones."""
        r, g, b = (int(self.fill(value)[i : i + 2], 16) for i in (1, 3, 5))
        return self.dark_ink if 0.299 * r + 0.587 * g + 0.114 * b > 140 else self.light_ink


def scale_legend(
    canvas: Canvas,
    x: float,
    y: float,
    scale: ColourScale,
    *,
    width: float = 160,
    height: float = 10,
    ticks: Sequence[float] = (0.0, 0.5, 1.0),
    label: str = "",
) -> float:
    """A colour bar for `scale` with percentage ticks under it, `label` to its left; returns its right edge."""
    group = canvas.group(class_="scale-legend")
    left = x
    if label:
        group.text(x, y + height - 1, label, fill="#333")
        left = x + text_width(label, 11) + 6
    steps = 20
    for i in range(steps):
        group.rect(left + i * width / steps, y, width / steps + 0.5, height, fill=scale.fill(i / (steps - 1)))
    group.rect(left, y, width, height, fill="none", stroke="#8899aa", stroke_width=0.5)
    for tick in ticks:
        group.text(left + tick * width, y + height + 11, f"{tick:.0%}", text_anchor="middle", fill="#333", font_size=10)
    return left + width
