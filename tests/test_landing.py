"""The landing page and /api/layout: the node's layout with live activity, memory, pods and idle slices marked."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from exporter.http.landing import landing_page, layout_fragment
from exporter.http.layout import ActivityWindow, LayoutView, layout
from exporter.http.server import build_app
from exporter.kubernetes.attribution import Allocation, Holder, PodAttribution
from exporter.model import Entity, Field, Snapshot
from exporter.sampler import Sampler
from exporter.sources.synthetic.patterns import Idle
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.kubelet import dgx_pods
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


def sections(page: str) -> dict[int, str]:
    """Each GPU card's HTML by GPU index."""
    return {int(g): s for g, s in re.findall(r'<section class="gpu[^"]*" data-gpu="(\d+)">(.*?)</section>', page, re.S)}


class Kubelet:
    """An attribution provider holding the pods of tests/support/kubelet.py's dgx_pods."""

    def __init__(self, snapshot: Snapshot, extra: tuple[Allocation, ...] = ()) -> None:
        allocations = [
            Allocation(resource, device, Holder(pod.namespace, pod.name, container))
            for pod in dgx_pods(snapshot.topology)
            for container, resource, devices in pod.containers
            for device in devices
        ]
        self.attribution = PodAttribution((*allocations, *extra))
        self.kubelet_up: bool | None = True


@pytest.fixture
async def client(aiohttp_client: ClientFactory, dgx: Simulator) -> TestClient:  # type: ignore[type-arg]
    source = SyntheticSource(dgx, clock=lambda: BURST_HIGH)
    return await aiohttp_client(build_app(Sampler(source, interval=0.2, clock=lambda: BURST_HIGH)))


async def test_api_layout_gives_every_gpu_and_instance_with_live_values(client: TestClient, dgx: Simulator) -> None:  # type: ignore[type-arg]
    """/api/layout lists 8 GPUs and 24 instances with placement, activity, memory, compute instances and idle flags."""
    response = await client.get("/api/layout")
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    data = await response.json()
    assert data["source"] == "synthetic" and data["timestamp"] == BURST_HIGH and data["attribution"] is False
    gpus = {g["gpu"]: g for g in data["gpus"]}
    assert len(gpus) == 8 and sum(len(g["instances"]) for g in gpus.values()) == 24
    for g in data["gpus"]:
        for inst in g["instances"]:
            truth = dgx.gi_activity(g["gpu"], inst["gi"], BURST_HIGH)[Field.GR_ENGINE_ACTIVE]
            assert inst["activity"] == pytest.approx(truth)
            assert inst["memory_used_bytes"] == dgx.gi_memory_used(g["gpu"], inst["gi"], BURST_HIGH)
            assert inst["pods"] == []
    assert {(g["gpu"], i["gi"]) for g in data["gpus"] for i in g["instances"] if i["idle"]} == idle_keys(dgx)
    (seven_g,) = gpus[4]["instances"]
    assert seven_g["profile"] == "7g.80gb" and [c["compute_slices"] for c in seven_g["compute_instances"]] == [4, 2, 1]
    assert gpus[7]["mig_mode"] == "disabled" and gpus[7]["activity"] == pytest.approx(0.65)


async def test_page_is_a_grid_of_gpu_cards_with_one_slice_map_each(client: TestClient) -> None:  # type: ignore[type-arg]
    """`/` has a card per GPU: a slice map per MIG GPU with the 5 idle boxes, a whole-GPU card, no outside assets."""
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    cards = sections(page)
    assert sorted(cards) == list(range(8))
    assert page.count('class="mig-box') == 24 and page.count('class="mig-box idle"') == 5
    assert all(cards[g].count("<svg") == 1 for g in range(8))
    assert '<section class="gpu whole" data-gpu="7">' in page and 'class="mig-whole"' in cards[7]
    assert "MIG disabled, so the whole GPU is one device: activity <b>65%</b>" in cards[7]
    assert "<text" in cards[1] and "70% · 31.6/39.5 GiB" in cards[1]  # wide boxes carry activity and memory
    assert "setInterval(refresh, 1000)" in page and "fetch('layout.html'" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<link" not in page


async def test_compute_instances_sit_inside_their_gpu_instance_and_have_rows(client: TestClient) -> None:  # type: ignore[type-arg]
    """The 7g instance shared by three compute instances draws three boxes in its compute row and lists them."""
    cards = sections(await (await client.get("/")).text())
    assert cards[4].count('class="mig-ci"') == 3 and cards[5].count('class="mig-ci"') == 3
    assert cards[0].count('class="mig-ci"') == 0  # a GI whose one compute instance spans it is drawn whole
    rows = re.findall(r'<tr class="ci"><td>CI (\d)</td><td>([^<]+)</td>', cards[4])
    assert rows == [("0", "4c.7g.80gb"), ("1", "2c.7g.80gb"), ("2", "1c.7g.80gb")]


async def test_legend_explains_the_activity_scale_idle_and_free_slices(client: TestClient) -> None:  # type: ignore[type-arg]
    """Above the cards, one legend: the colour scale from 0% to 100%, what idle means, and a free slice."""
    page = await (await client.get("/")).text()
    legend = page[page.index('aria-label="legend of the slice maps"') : page.index("</svg>", page.index("legend"))]
    assert re.findall(r">([^<>]+)</text>", legend) == [
        "activity",
        "0%",
        "50%",
        "100%",
        "idle: mean activity under 5% over 5m",
        "free slice",
    ]
    assert page.index("legend of the slice maps") < page.index('<section class="gpu')


async def test_fragment_is_the_live_part_of_the_page(client: TestClient) -> None:  # type: ignore[type-arg]
    """/layout.html is the part of the page the script swaps in, not cached."""
    response = await client.get("/layout.html")
    fragment = await response.text()
    page = await (await client.get("/")).text()
    assert response.headers["Cache-Control"] == "no-store"
    assert fragment.startswith('<div class="summary-bar">') and fragment in page
    assert '24 GPU instances, <b class="idle">5 idle</b> (mean activity under 5% over the last 5m)' in fragment


def _view(dgx: Simulator, window: ActivityWindow, t: float = BURST_HIGH, **kw: object) -> LayoutView:
    return layout(snapshot_at(dgx, t), window, "synthetic", **kw)  # type: ignore[arg-type]


def test_a_pause_between_bursts_is_not_idle(dgx: Simulator) -> None:
    """Over a full burst period a bursty slice averages ~48% and is not idle, though it reads 0% right now."""
    window = ActivityWindow()
    end = BURST_HIGH + 290  # in the quiet half of GPU 0's bursty slice
    for i in range(31):
        window.update(snapshot_at(dgx, end - 300 + i * 10))
    view = _view(dgx, window, end)
    bursty = next(i for i in view.gpus[0].instances if i.gi == 5)
    assert bursty.activity == 0 and bursty.activity_5m == pytest.approx(0.475, abs=0.05) and not bursty.idle
    assert {(g.gpu, i.gi) for g in view.gpus for i in g.instances if i.idle} == idle_keys(dgx)
    assert not view.window_filling and 'class="filling"' not in layout_fragment(view)


def test_the_window_holds_exactly_its_last_minutes_through_hours_of_samples(dgx: Simulator) -> None:
    """Samples older than the window leave it, however long the daemon runs; a removed instance is forgotten."""
    window = ActivityWindow(seconds=10)
    snapshot = snapshot_at(dgx, BURST_HIGH)
    values = snapshot.samples[0].values
    for t in range(3600):  # an hour at 1 s: GPU 0's GI 1 reads t / 3600 at time t
        sample = dataclasses.replace(
            snapshot.samples[0], values={**values, Entity(0, 1): {Field.GR_ENGINE_ACTIVE: t / 3600}}
        )
        window.update(dataclasses.replace(snapshot, timestamp=float(t), samples={**snapshot.samples, 0: sample}))
    assert window.mean(0, 1) == pytest.approx(sum(range(3589, 3600)) / 11 / 3600)  # 3589 s .. 3599 s
    assert window.covered == 10
    gone = dataclasses.replace(
        snapshot, topology=dataclasses.replace(snapshot.topology, gpus=snapshot.topology.gpus[1:])
    )
    window.update(dataclasses.replace(gone, timestamp=3600.0))
    assert window.mean(0, 1) is None and window.mean(1, 1) is not None


def test_while_the_window_fills_the_idle_count_says_what_it_rests_on(dgx: Simulator) -> None:
    """Shortly after start the summary says how much of the 5-minute window is sampled, and when it is full."""
    window = ActivityWindow()
    for t in (BURST_HIGH, BURST_HIGH + 42):
        window.update(snapshot_at(dgx, t))
    fragment = layout_fragment(_view(dgx, window, BURST_HIGH + 42))
    assert re.search(
        r'<p class="filling">Only 42s of the 5m window sampled so far: the idle count rests on that and settles '
        r"once the window is full, at \d\d:\d\d:\d\d\.</p>",
        fragment,
    )


def test_pods_holding_each_slice_are_listed_when_attribution_is_on(dgx: Simulator) -> None:
    """With a kubelet, each card's table names the pods on each GPU instance and compute instance, escaped."""
    snapshot = snapshot_at(dgx, BURST_HIGH)
    gpu4 = snapshot.topology.gpus[4].instances[0].compute_instances[1].mig_uuid
    hostile = Allocation("nvidia.com/mig-2c.7g.80gb", gpu4, Holder("ml", "<script>x</script>", "c"))
    kubelet = Kubelet(snapshot, (hostile,))
    view = layout(snapshot, ActivityWindow(), "synthetic", kubelet)
    assert view.attribution
    gi1 = next(i for i in view.gpus[1].instances if i.gi == 1)
    assert [str(p) for p in gi1.pods] == ["research/train-a"] and gi1.pods[0].container == "trainer"
    assert [str(p) for p in view.gpus[7].pods] == ["training/llm"]
    cards = sections(landing_page(view, 1.0))
    assert "<th>pods</th>" in cards[1] and '<td title="research/train-a">research/train-a</td>' in cards[1]
    assert "notebooks/alice, notebooks/bob" in cards[5]  # time-sliced: both holders of one slice
    assert "ml/&lt;script&gt;x&lt;/script&gt;" in cards[4] and "<script>x" not in cards[4]
    assert "held by training/llm" in cards[7]
    assert layout(snapshot, ActivityWindow(), "synthetic", None).as_json()["attribution"] is False
    kubelet.kubelet_up = None  # no socket: attribution is off, no pods column
    off = layout_fragment(layout(snapshot, ActivityWindow(), "synthetic", kubelet))
    assert "<th>pods</th>" not in off


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
    view = layout(
        dataclasses.replace(snapshot, topology=dataclasses.replace(snapshot.topology, gpus=(odd,))),
        ActivityWindow(),
        "x",
    )
    fragment = layout_fragment(view)
    assert "No slice map: unknown GPU board &#39;a100-7gb&#39;" in fragment and fragment.count("<svg") == 1  # legend
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
    assert "No slice map: this source does not report placements." in fragment and fragment.count("<svg") == 1
    assert fragment.count("<td>?</td>") == 2


def test_a_stale_gpu_is_marked_on_its_card(dgx: Simulator) -> None:
    """A GPU without a fresh sample keeps its card, greyed and badged, with its values missing."""
    snapshot = snapshot_at(dgx, BURST_HIGH)
    stale = dataclasses.replace(snapshot, samples={k: v for k, v in snapshot.samples.items() if k != 2})
    cards = sections(layout_fragment(layout(stale, ActivityWindow(), "synthetic")))
    assert '<span class="badge">stale: no fresh sample</span>' in cards[2]
    assert cards[2].count('<td class="num">-</td>') == 4


def test_the_page_s_modules_load_on_its_first_view_not_at_start_up() -> None:
    """A daemon only Prometheus talks to never loads Jinja2, the drawings or the counters-file parser (RSS)."""
    code = """
import asyncio, sys
from exporter.cli import main, serve
from exporter.http.landing import landing_page
from exporter.http.layout import ActivityWindow, layout
from exporter.sampler import Sampler
from exporter.sources import SourceOptions, open_source
lazy = ("jinja2", "markupsafe", "xml.etree.ElementTree", "exporter.http.drawings", "csv", "difflib")
print(*(m in sys.modules for m in lazy))
sampler = Sampler(open_source("synthetic", SourceOptions(scenario="dgx-h100")))
snapshot = asyncio.run(sampler.run_once())
assert "data-gpu" in landing_page(layout(snapshot, ActivityWindow(), "synthetic"), 1.0)
print(*(m in sys.modules for m in lazy[:4]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["False False False False False False", "True True True True"]
