"""The landing page in a real headless Chromium against a running `dgx-h100` exporter with pod attribution."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.sources.synthetic.patterns import Idle
from exporter.sources.synthetic.scenario import load
from tests.support.browser import DevToolsPage
from tests.support.kubelet import FakeKubelet, dgx_pods, short_socket_dir
from tests.support.processes import ExporterProcess
from tests.support.snapshots import fixed_snapshot

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 1400, 900


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    log = tmp_path_factory.mktemp("landing") / "exporter.log"
    folder = short_socket_dir()
    socket = os.path.join(folder, "kubelet.sock")
    with (
        FakeKubelet(socket, dgx_pods(fixed_snapshot("dgx-h100").topology)),
        ExporterProcess(
            [*("--source", "synthetic", "--scenario", "dgx-h100", "--interval", "1"), "--kubelet-socket", socket],
            log_path=log,
        ) as process,
    ):
        yield process
    shutil.rmtree(folder, ignore_errors=True)


def test_page_refreshes_itself_and_marks_the_idle_slices(chromium: list[str], exporter: ExporterProcess) -> None:
    """After the page's own refreshes, the DOM shows every GPU, the slice maps, and the scenario's idle slices."""
    dom = subprocess.run(
        [*chromium, "--virtual-time-budget=4000", "--dump-dom", exporter.url + "/"],
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    assert re.search(r'<span id="status" class="live">live · updated [^<]+</span>', dom), dom[:2000]
    sections = dict(re.findall(r'<section class="gpu[^"]*" data-gpu="(\d+)">(.*?)</section>', dom, re.S))
    assert sorted(map(int, sections)) == list(range(8))
    assert all(sections[str(g)].count("<svg") == 1 for g in range(8))
    assert "MIG disabled, so the whole GPU is one device: activity <b>65%</b>" in sections["7"]
    for gpu, spec in enumerate(load("dgx-h100").gpus):
        idle = {i.gi for i in spec.instances if all(isinstance(c.activity, Idle) for c in i.compute_instances)}
        marked = {int(g) for g in re.findall(r'<tr class="idle"><td>GI (\d+)</td>', sections[str(gpu)])}
        assert idle <= marked, (gpu, marked)
    # GPU 0's bursty slice may also read idle during its quiet half, before the 5-minute window fills
    assert 5 <= dom.count('class="mig-box idle"') <= 6


PROBE = """(() => {
  const box = e => {
    const r = e.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom};
  };
  const cards = [...document.querySelectorAll("section.gpu")].map(s => ({
    gpu: +s.dataset.gpu, classes: s.className, box: box(s),
    map: s.querySelector("svg") ? box(s.querySelector("svg")) : null,
    boxes: s.querySelectorAll("g.mig-box").length, whole: !!s.querySelector("g.mig-whole"),
    text: s.innerText,
  }));
  const idle = [...document.querySelectorAll("g.mig-box.idle")].map(g => {
    const rects = [...g.querySelectorAll(":scope > rect")].map(box);
    return {rects, labels: [...g.querySelectorAll(":scope > text")].map(t => ({text: t.textContent, box: box(t)}))};
  });
  const cis = [...document.querySelectorAll("section.gpu[data-gpu='4'] g.mig-ci")]
    .map(g => box(g.querySelector("rect")));
  const gi4 = document.querySelector("section.gpu[data-gpu='4'] g.mig-box > rect");
  const legend = document.querySelector("svg[aria-label='legend of the slice maps']");
  return {
    viewport: [innerWidth, innerHeight], scrollWidth: document.documentElement.scrollWidth,
    cards, idle, cis, gi4: gi4 ? box(gi4) : null,
    legend: legend ? {box: box(legend), texts: [...legend.querySelectorAll("text")].map(t => t.textContent)} : null,
    summary: {text: document.querySelector("p.summary").innerText, box: box(document.querySelector("p.summary"))},
    filling: document.querySelector("p.filling") ? {text: document.querySelector("p.filling").innerText,
                                                       box: box(document.querySelector("p.filling"))} : null,
  };
})()"""


def visible(box: dict[str, float]) -> bool:
    """Entirely inside the 1400x900 viewport: above the fold, no scrolling."""
    return box["top"] >= 0 and box["left"] >= 0 and box["bottom"] <= HEIGHT and box["right"] <= WIDTH


async def test_above_the_fold_at_1400x900(chromium: list[str], exporter: ExporterProcess, artifacts: Path) -> None:
    """At 1400x900 the first screen shows the summary, the legend, six GPU maps in three columns, readable idle
    labels, the 7g instance's compute instances inside it and the pods on each slice; saved as a screenshot."""
    shot = artifacts / "landing-dgx-h100-1400x900.png"
    shot.unlink(missing_ok=True)
    async with DevToolsPage(chromium, WIDTH, HEIGHT) as page:
        await page.open(exporter.url + "/", settle=1.5)  # the page's script has refreshed it at least once
        seen: dict[str, Any] = await page.evaluate(PROBE)
        await page.screenshot(shot)
    assert seen["viewport"] == [WIDTH, HEIGHT] and seen["scrollWidth"] <= WIDTH
    assert visible(seen["summary"]["box"]) and re.search(r"8 GPUs, 24 GPU instances, \d idle", seen["summary"]["text"])
    assert seen["filling"] is not None and visible(seen["filling"]["box"])
    assert "of the 5m window sampled so far" in seen["filling"]["text"]
    assert seen["legend"] is not None and visible(seen["legend"]["box"])
    assert seen["legend"]["texts"][:4] == ["activity", "0%", "50%", "100%"] and "free slice" in seen["legend"]["texts"]

    maps = [c for c in seen["cards"] if c["boxes"] and c["map"] and visible(c["map"])]
    assert len(maps) >= 6, [(c["gpu"], c["map"]) for c in seen["cards"]]
    assert len({round(c["box"]["left"]) for c in maps}) >= 3  # the grid uses the width: three columns
    assert all(c["map"]["right"] - c["map"]["left"] >= 400 for c in maps)  # maps drawn near full size

    above = [i for i in seen["idle"] if visible(i["rects"][-1])]
    assert len(above) >= 4
    for box in above:
        memory = box["rects"][-1]
        for label in box["labels"]:
            assert label["box"]["bottom"] - label["box"]["top"] >= 10, label  # a 10 px font or larger, as drawn
            inside = min(r["left"] for r in box["rects"]) - 1 <= label["box"]["left"]
            assert inside and label["box"]["right"] <= max(r["right"] for r in box["rects"]) + 1, label
        assert any(label["text"] == "idle" for label in box["labels"]) or memory["right"] - memory["left"] < 60

    assert len(seen["cis"]) == 3 and seen["gi4"] is not None
    for ci in seen["cis"]:
        gi = seen["gi4"]
        assert (
            gi["left"] <= ci["left"] < ci["right"] <= gi["right"]
            and gi["top"] <= ci["top"] < ci["bottom"] <= gi["bottom"]
        )

    cards = {c["gpu"]: c for c in seen["cards"]}
    assert "research/train-a" in cards[1]["text"] and "serving/infer-3" in cards[0]["text"]
    assert visible(cards[1]["box"]) and "pods" in cards[1]["text"]
    assert cards[7]["whole"] and "whole" in cards[7]["classes"] and "training/llm" in cards[7]["text"]

    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (WIDTH, HEIGHT)
    assert shot.stat().st_size > 50_000  # a drawn page, not a blank one
