"""The landing page in a real headless Chromium against a running `dgx-h100` exporter."""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.sources.synthetic.patterns import Idle
from exporter.sources.synthetic.scenario import load
from tests.support.processes import ExporterProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    log = tmp_path_factory.mktemp("landing") / "exporter.log"
    with ExporterProcess(
        ["--source", "synthetic", "--scenario", "dgx-h100", "--interval", "1"], log_path=log
    ) as process:
        yield process


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
    assert dom.count("<svg") == 7 and "Whole GPU: activity <b>65%</b>" in sections["7"]
    for gpu, spec in enumerate(load("dgx-h100").gpus):
        idle = {i.gi for i in spec.instances if all(isinstance(c.activity, Idle) for c in i.compute_instances)}
        marked = {int(g) for g in re.findall(r'<tr class="idle"><td>GI (\d+)</td>', sections[str(gpu)])}
        assert idle <= marked, (gpu, marked)
    # GPU 0's bursty slice may also read idle during its quiet half, before the 5-minute window fills
    assert 5 <= dom.count('class="mig-box idle"') <= 6


def test_screenshot_of_the_landing_page(chromium: list[str], exporter: ExporterProcess, artifacts: Path) -> None:
    """Chromium renders the page to a full-size PNG, saved as a test artifact for people to look at."""
    path = artifacts / "landing-dgx-h100.png"
    path.unlink(missing_ok=True)
    subprocess.run(
        [*chromium, "--window-size=1100,2500", f"--screenshot={path}", exporter.url + "/"],
        capture_output=True,
        timeout=90,
    )
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1100, 2500)
    assert path.stat().st_size > 50_000  # a drawn page, not a blank one
