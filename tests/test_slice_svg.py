"""The SVG slice maps the landing page, the planner and the capacity report share, and the drawing toolkit."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from exporter.mig.catalog import board
from exporter.mig.svg import ACTIVITY, ComputeBox, SliceBox, activity_legend_svg, slice_map_svg, whole_gpu_svg
from exporter.svg import drawing, text_width
from exporter.units import GIB, gib, percent

NS = {"svg": "http://www.w3.org/2000/svg"}


def boxes(svg: str) -> list[ET.Element]:
    return ET.fromstring(svg).findall("svg:g", NS)


def test_map_draws_each_instance_over_its_slices_and_the_free_cells() -> None:
    """Each box covers its compute and memory slices; the 7 + 8 slice cells are drawn beneath as free."""
    svg = slice_map_svg(board("h100-80gb"), [SliceBox(0, 4, 4, "4g.40gb"), SliceBox(4, 4, 3, "3g.40gb")])
    root = ET.fromstring(svg)
    free = [r for r in root.findall("svg:rect", NS) if r.get("stroke-dasharray") == "4 3"]
    assert len(free) == 15
    groups = boxes(svg)
    assert [g.find("svg:title", NS).text for g in groups] == ["4g.40gb", "3g.40gb"]  # type: ignore[union-attr]
    compute, memory = groups[1].findall("svg:rect", NS)
    assert float(compute.get("width", 0)) * 4 == pytest.approx(float(memory.get("width", 0)) * 3, rel=0.05)
    assert float(compute.get("x", 0)) == float(memory.get("x", 0)) > float(groups[0].find("svg:rect", NS).get("x", 0))  # type: ignore[union-attr]


def test_values_shade_boxes_from_light_to_dark_and_are_printed() -> None:
    """A busy instance is drawn darker than an idle-looking one, and its value shows as a percentage."""
    svg = slice_map_svg(board("h100-80gb"), [SliceBox(0, 2, 2, "busy", 0.9), SliceBox(2, 2, 2, "quiet", 0.1)])
    busy, quiet = boxes(svg)
    darkness = [
        sum(int(g.find("svg:rect", NS).get("fill", "")[i : i + 2], 16) for i in (1, 3, 5)) for g in (busy, quiet)
    ]  # type: ignore[union-attr]
    assert darkness[0] < darkness[1]
    assert [t.text for t in busy.findall("svg:text", NS)] == ["busy", "90%"]


def test_idle_boxes_are_hatched_and_labelled() -> None:
    """An idle instance gets the hatch pattern, a red dashed outline and the word idle."""
    svg = slice_map_svg(board("h100-80gb"), [SliceBox(6, 1, 1, "1g.10gb", 0.0, idle=True)])
    (group,) = boxes(svg)
    assert group.get("class") == "mig-box idle"
    rect = group.find("svg:rect", NS)
    assert rect is not None and rect.get("fill") == "url(#mig-idle-hatch)" and rect.get("stroke") == "#d62728"
    assert "idle" in [t.text for t in group.findall("svg:text", NS)]
    assert group.find("svg:title", NS).text == "1g.10gb: 0% (idle)"  # type: ignore[union-attr]


def test_labels_and_titles_are_escaped() -> None:
    """Markup in labels and titles is text, so the document stays well-formed."""
    svg = slice_map_svg(board("h100-80gb"), [SliceBox(0, 4, 4, '<b>&"x"')], title="gpu <0> & co")
    root = ET.fromstring(svg)
    assert root.find("svg:title", NS).text == "gpu <0> & co"  # type: ignore[union-attr]
    assert '<b>&"x"' in [t.text for t in root.iter(f"{{{NS['svg']}}}text")]
    assert "<b>" not in svg


def test_a_box_off_the_map_is_rejected() -> None:
    """A box past the last memory or compute slice is a caller error, not a silently clipped drawing."""
    with pytest.raises(ValueError, match="off the map"):
        slice_map_svg(board("h100-80gb"), [SliceBox(6, 4, 3, "3g.40gb")])
    with pytest.raises(ValueError, match="compute slices past slice 6"):
        slice_map_svg(board("h100-80gb"), [SliceBox(7, 1, 1, "1g.10gb")])


def test_the_map_renders_in_a_browser(artifacts: Path) -> None:
    """The SVG is a complete document a browser opens (saved under test-artifacts/ for a look)."""
    svg = slice_map_svg(
        board("h100-80gb"),
        [SliceBox(0, 4, 4, "4g.40gb", 0.8), SliceBox(4, 2, 2, "2g.20gb", 0.3), SliceBox(6, 1, 1, "1g.10gb", 0.0, True)],
        title="GPU 0",
    )
    (artifacts / "slice-map.svg").write_text(svg)
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ') and svg.endswith("</svg>\n")


def _rect(element: ET.Element) -> tuple[float, float, float, float]:
    return tuple(float(element.get(k, 0)) for k in ("x", "y", "width", "height"))  # type: ignore[return-value]


def test_compute_instances_are_drawn_inside_their_gpu_instance() -> None:
    """A 7g instance with three compute instances shows three boxes within its compute row, sized by slices."""
    cis = (ComputeBox("CI 0", 2, 0.9), ComputeBox("CI 1", 2, 0.0), ComputeBox("CI 2", 3, 0.5, "ml/trainer"))
    svg = slice_map_svg(board("h100-80gb"), [SliceBox(0, 8, 7, "7g.80gb", 0.47, compute_instances=cis)])
    (group,) = boxes(svg)
    gx, gy, gw, gh = _rect(group.findall("svg:rect", NS)[0])
    parts = group.findall("svg:g", NS)
    assert [p.get("class") for p in parts] == ["mig-ci"] * 3
    assert [p.find("svg:title", NS).text for p in parts] == ["CI 0: 90%", "CI 1: 0%", "CI 2: 50%\nml/trainer"]  # type: ignore[union-attr]
    widths = []
    for part in parts:
        x, y, w, h = _rect(part.find("svg:rect", NS))  # type: ignore[arg-type]
        assert gx <= x and x + w <= gx + gw and gy <= y and y + h <= gy + gh
        widths.append(w)
    assert widths[2] / widths[0] == pytest.approx(1.5, rel=0.05)
    assert [t.text for t in parts[0].findall("svg:text", NS)] == ["CI 0 · 90%"]


def test_labels_fit_their_boxes_or_fall_back_to_shorter_ones() -> None:
    """Every label is narrower than its box: a 1-slice box shows its profile at 10 px, a +me one its short name."""
    svg = slice_map_svg(
        board("h100-80gb"),
        [
            SliceBox(0, 4, 3, "3g.40gb", 0.7, detail="31.6/39.5 GiB"),
            SliceBox(4, 1, 1, "1g.10gb", 0.2, detail="1.0/9.8 GiB"),
            SliceBox(5, 1, 1, "1g.10gb+me", 0.0, idle=True),
        ],
    )
    wide, narrow, media = boxes(svg)
    assert [t.text for t in wide.findall("svg:text", NS)] == ["3g.40gb", "70% · 31.6/39.5 GiB"]
    assert [(t.text, t.get("font-size")) for t in narrow.findall("svg:text", NS)] == [("1g.10gb", "10"), ("20%", "11")]
    assert [t.text for t in media.findall("svg:text", NS)][:2] == ["1g+me", "0%"]
    for group in (wide, narrow, media):
        box_width = float(group.findall("svg:rect", NS)[1].get("width", 0))
        for t in group.findall("svg:text", NS):
            assert text_width(t.text or "", float(t.get("font-size", 11))) <= box_width


def test_idle_labels_have_a_halo_that_keeps_them_readable_on_the_stripes() -> None:
    """Text on a hatched box is drawn over a white outline (paint-order stroke)."""
    (group,) = boxes(slice_map_svg(board("h100-80gb"), [SliceBox(0, 2, 2, "2g.20gb", 0.01, idle=True)]))
    for t in group.findall("svg:text", NS):
        assert (t.get("stroke"), t.get("paint-order")) == ("#ffffff", "stroke")


def test_whole_gpu_and_legend_drawings() -> None:
    """A MIG-disabled GPU is one shaded box the size of a map; the legend shows the scale, idle and free slices."""
    whole = ET.fromstring(whole_gpu_svg("GPU 7", "whole GPU (MIG disabled)", 0.65, "64.0/79.6 GiB"))
    (group,) = whole.findall("svg:g", NS)
    assert group.get("class") == "mig-whole" and group.find("svg:rect", NS).get("fill") == ACTIVITY.fill(0.65)  # type: ignore[union-attr]
    assert [t.text for t in group.findall("svg:text", NS)] == ["whole GPU (MIG disabled)", "65% · 64.0/79.6 GiB"]
    legend = activity_legend_svg("mean activity under 5% over 5 min")
    texts = [t.text for t in ET.fromstring(legend).iter(f"{{{NS['svg']}}}text")]
    assert texts == ["activity", "0%", "50%", "100%", "idle: mean activity under 5% over 5 min", "free slice"]


def test_the_colour_scale_keeps_text_readable() -> None:
    """Dark ink on the light end of the activity scale, white ink on the dark end; values are clamped."""
    assert ACTIVITY.ink(0.0) == "#102a43" and ACTIVITY.ink(1.0) == "#ffffff"
    assert ACTIVITY.fill(-1) == ACTIVITY.fill(0) == "#deebf7" and ACTIVITY.fill(2) == "#084594"


def test_svg_attributes_are_dashed_compact_and_escaped() -> None:
    """Keyword arguments become SVG attribute names, numbers are short, text and attributes are escaped."""
    svg = drawing(100, 50.5, 'a "b" <c>')
    svg.text(1.0, 2.25, "x < y & z", font_size=10, text_anchor="end", class_="t", fill=None)
    out = svg.to_string()
    assert 'viewBox="0 0 100 50.5"' in out and 'aria-label="a &quot;b&quot; &lt;c&gt;"' in out
    assert '<text x="1" y="2.25" font-size="10" text-anchor="end" class="t">x &lt; y &amp; z</text>' in out


def test_units_read_as_people_write_them() -> None:
    """Percentages and GiB, with a dash for a value that is missing."""
    assert (percent(0.417), percent(0.417, 1), percent(None)) == ("42%", "41.7%", "-")
    assert (gib(3 * GIB / 2), gib(GIB, 0), gib(GIB, unit=False), gib(None)) == ("1.5 GiB", "1 GiB", "1.0", "-")
