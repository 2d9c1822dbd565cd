"""The SVG slice map that the landing page and the capacity report reuse."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from exporter.mig.catalog import board
from exporter.mig.svg import SliceBox, slice_map_svg

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
    svg = slice_map_svg(board("h100-80gb"), [SliceBox(0, 1, 1, '<b>&"x"')], title="gpu <0> & co")
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
