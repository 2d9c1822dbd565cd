"""The landing page and /api/layout: the node's layout with live activity, memory and idle slices marked."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from exporter.http.landing import ActivityWindow, landing_page, layout, layout_fragment
from exporter.http.server import build_app
from exporter.model import Field
from exporter.sampler import Sampler
from exporter.sources.synthetic.patterns import Idle
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.snapshots import snapshot_at

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]
BURST_HIGH = 1_790_000_100.0  # GPU 0's bursty 1g.10gb (period 300 s) is in its busy half at this instant


def idle_keys(sim: Simulator) -> set[tuple[int, int]]:
    return {
        (g, inst.gi)
        for g, spec in enumerate(sim.scenario.gpus)
        for inst in spec.instances
        if all(isinstance(c.activity, Idle) for c in inst.compute_instances)
    }


@pytest.fixture
async def client(aiohttp_client: ClientFactory, dgx: Simulator) -> TestClient:  # type: ignore[type-arg]
    source = SyntheticSource(dgx, clock=lambda: BURST_HIGH)
    return await aiohttp_client(build_app(Sampler(source, interval=0.2, clock=lambda: BURST_HIGH)))


async def test_api_layout_gives_every_gpu_and_instance_with_live_values(client: TestClient, dgx: Simulator) -> None:  # type: ignore[type-arg]
    """/api/layout lists 8 GPUs and 24 instances with placement, activity, memory, compute instances and idle flags."""
    response = await client.get("/api/layout")
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    data = await response.json()
    assert data["source"] == "synthetic" and data["timestamp"] == BURST_HIGH
    gpus = {g["gpu"]: g for g in data["gpus"]}
    assert len(gpus) == 8 and sum(len(g["instances"]) for g in gpus.values()) == 24
    for g in data["gpus"]:
        for inst in g["instances"]:
            truth = dgx.gi_activity(g["gpu"], inst["gi"], BURST_HIGH)[Field.GR_ENGINE_ACTIVE]
            assert inst["activity"] == pytest.approx(truth)
            assert inst["memory_used_bytes"] == dgx.gi_memory_used(g["gpu"], inst["gi"], BURST_HIGH)
    assert {(g["gpu"], i["gi"]) for g in data["gpus"] for i in g["instances"] if i["idle"]} == idle_keys(dgx)
    (seven_g,) = gpus[4]["instances"]
    assert seven_g["profile"] == "7g.80gb" and len(seven_g["compute_instances"]) == 3
    assert gpus[7]["mig_mode"] == "disabled" and gpus[7]["activity"] == pytest.approx(0.65)


async def test_page_draws_one_slice_map_per_mig_gpu_with_idle_boxes_marked(client: TestClient) -> None:  # type: ignore[type-arg]
    """`/` has an SVG slice map per MIG GPU, one box per instance, the 5 idle ones marked, and no external assets."""
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert page.count("<svg") == 7
    assert page.count('class="mig-box') == 24  # GPU 7 runs without MIG: no boxes, a line of text
    assert page.count('class="mig-box idle"') == 5
    assert "1g.10gb" in page and "3g.40gb · 31.6/40 GiB" in page  # wide boxes also carry their memory
    assert "Whole GPU: activity <b>65%</b>" in page
    assert "setInterval(refresh, 1000)" in page and "fetch('layout.html'" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<link" not in page


async def test_fragment_is_the_live_part_of_the_page(client: TestClient) -> None:  # type: ignore[type-arg]
    """/layout.html is the GPU sections the page embeds, not cached, so the script can swap them in."""
    fragment = await (await client.get("/layout.html")).text()
    page = await (await client.get("/")).text()
    assert fragment.startswith("<p class='summary'") and fragment in page
    assert "24 GPU instances, <b class='idle'>5 idle</b>" in fragment


def test_a_pause_between_bursts_is_not_idle(dgx: Simulator) -> None:
    """Over a full burst period a bursty slice averages ~48% and is not idle, though it reads 0% right now."""
    window = ActivityWindow()
    end = BURST_HIGH + 290  # in the quiet half of GPU 0's bursty slice
    for i in range(31):
        window.update(snapshot_at(dgx, end - 300 + i * 10))
    data = layout(snapshot_at(dgx, end), window, "synthetic")
    bursty = next(i for i in data["gpus"][0]["instances"] if i["gi"] == 5)
    assert bursty["activity"] == 0 and bursty["activity_5m"] == pytest.approx(0.475, abs=0.05)
    assert not bursty["idle"]
    assert {(g["gpu"], i["gi"]) for g in data["gpus"] for i in g["instances"] if i["idle"]} == idle_keys(dgx)
    assert "over 5 min)" in layout_fragment(data)


def test_early_idle_marks_say_how_much_history_they_rest_on(dgx: Simulator) -> None:
    """Shortly after start the page says how many seconds of the 5-minute window it has sampled."""
    window = ActivityWindow()
    for t in (BURST_HIGH, BURST_HIGH + 2):
        window.update(snapshot_at(dgx, t))
    assert "over 5 min, 2 s of it sampled so far" in layout_fragment(
        layout(snapshot_at(dgx, BURST_HIGH + 2), window, "x")
    )


def test_window_forgets_instances_that_no_longer_exist(dgx: Simulator) -> None:
    """After a re-partition the old instances' history is dropped, so the page never shows ghosts."""
    window = ActivityWindow()
    before = snapshot_at(dgx, BURST_HIGH)
    window.update(before)
    gone = dataclasses.replace(before.topology.gpus[1], instances=())
    window.update(dataclasses.replace(before, topology=dataclasses.replace(before.topology, gpus=(gone,))))
    assert window.mean(1, 1) is None


def test_without_a_sample_or_a_known_board_the_page_still_renders(dgx: Simulator) -> None:
    """No sample yet gives a plain message; a GPU of an unknown board keeps its table but no slice map."""
    assert "No sample yet." in landing_page(layout(None, ActivityWindow(), "nvml"), 1.0)
    snapshot = snapshot_at(dgx, BURST_HIGH)
    odd = dataclasses.replace(snapshot.topology.gpus[1], board="a100-7gb")
    data = layout(
        dataclasses.replace(snapshot, topology=dataclasses.replace(snapshot.topology, gpus=(odd,))),
        ActivityWindow(),
        "x",
    )
    fragment = layout_fragment(data)
    assert "No slice map: unknown GPU board &#x27;a100-7gb&#x27;" in fragment and "<svg" not in fragment
    assert fragment.count("<td>3g.40gb</td>") == 2


def test_instances_without_placement_get_a_table_but_no_slice_map(dgx: Simulator) -> None:
    """A source that reports no placements (DCGM) still gets its instances listed, with '?' for the slices."""
    snapshot = snapshot_at(dgx, BURST_HIGH)
    gpu = snapshot.topology.gpus[1]
    unplaced = dataclasses.replace(
        gpu, instances=tuple(dataclasses.replace(i, placement_start=None) for i in gpu.instances)
    )
    topology = dataclasses.replace(snapshot.topology, gpus=(unplaced,))
    fragment = layout_fragment(layout(dataclasses.replace(snapshot, topology=topology), ActivityWindow(), "dcgm"))
    assert "no slice map: this source does not report placements" in fragment and "<svg" not in fragment
    assert fragment.count("<td>?</td>") == 2
