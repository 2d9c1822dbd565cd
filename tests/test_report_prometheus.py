"""`mig-exporter report` against a real Prometheus backfilled with 14 days of simulated history.

The scenario's truth is known: the simulator gives every sample, so the report's figures are
checked against it: means and idle shares exact (each 5m step holds exactly one backfilled sample, the
mean of the simulator over the step's scrapes), memory to the byte, the shown p95 within 0.001 (the
server's interpolated quantile; decisions test the exact one, see test_report_engines.py).
"""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from pytest_aiohttp import AiohttpServer

from exporter.cli.main import build_parser
from exporter.cli.report import options_from, review
from exporter.contract.thresholds import THRESHOLD_TOLERANCE
from exporter.model import Field
from exporter.report.prometheus import PrometheusError
from exporter.sources.synthetic.history import Node, sample_times, scrape_offsets
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.history import backfill
from tests.support.processes import PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_prometheus")]

SCENARIO = Path(__file__).parent / "scenarios" / "capacity-review.yaml"
STEP = 300
WINDOW = 14 * 86400
RATIO_TOLERANCE = 0.001
IDLE_THRESHOLD = 0.05
POD = (
    'mig_instance_pod_info{{instance="node-a:9401",job="mig-exporter",gpu="1",gi="1",ci="0",'
    'namespace="ml",pod="trainer-{n}",container="main"}} 1 {t}\n'
)


@dataclass
class Stack:
    prom: PrometheusServer
    end: int
    nodes: dict[str, Simulator]
    times: list[float]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Prometheus (retention 30d) holding 14 days of node-a (capacity-review.yaml) and node-b (demo)."""
    workdir = tmp_path_factory.mktemp("report")
    end = math.floor(time.time() / STEP) * STEP - STEP
    times = sample_times(end - WINDOW, end, STEP)
    nodes = {"node-a:9401": Simulator(load(str(SCENARIO))), "node-b:9401": Simulator(load("demo"))}
    # Two pods ran on node-a's busy 3g.40gb during the last day.
    pods = "# TYPE mig_instance_pod_info gauge\n" + "".join(
        POD.format(n=n, t=int(t)) for n in (0, 1) for t in times[-288:]
    )
    backfill([Node(k, v) for k, v in nodes.items()], times, workdir / "data", extra=pods)
    with PrometheusServer(workdir, extra_args=["--storage.tsdb.retention.time=30d"]) as prom:
        yield Stack(prom, end, nodes, times)


def run_report(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", "--prometheus", stack.prom.url, "--end", str(stack.end), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def report(stack: Stack) -> dict[str, Any]:
    """The JSON report over the whole 14 days."""
    result = run_report(stack, "--window", "14d", "--step", "5m", "--output", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def truth(sim: Simulator, gpu: int, gi: int, times: list[float]) -> dict[str, float]:
    """The simulator's own figures for one GPU instance over the steps (activity averaged over each step)."""
    offsets = scrape_offsets(STEP)
    activity = sorted(
        math.fsum(sim.gi_activity(gpu, gi, t + o)[Field.GR_ENGINE_ACTIVE] for o in offsets) / len(offsets)
        for t in times
    )
    return {
        "mean": sum(activity) / len(activity),
        "p95": activity[math.ceil(0.95 * len(activity)) - 1],
        "idle": sum(1 for a in activity if a < IDLE_THRESHOLD - THRESHOLD_TOLERANCE) / len(activity),
        "memory": max(sim.gi_memory_used(gpu, gi, t) for t in times),
    }


def by_key(doc: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {(i["node"], i["gpu"], i["gi"]): i for i in doc["instances"]}


def test_report_figures_match_the_simulator(stack: Stack, report: dict[str, Any]) -> None:
    """Mean and p95 activity, idle share and peak memory of every instance equal the simulator's truth."""
    got = by_key(report)
    expected = {
        (node, g.index, inst.gi): (sim, inst.profile)
        for node, sim in stack.nodes.items()
        for g, inst in sim.topology().iter_instances()
    }
    assert set(got) == set(expected)
    for (node, gpu, gi), (sim, profile) in expected.items():
        row, want = got[(node, gpu, gi)], truth(sim, gpu, gi, stack.times)
        assert row["profile"] == profile
        assert row["mean_gr_engine_active"] == pytest.approx(want["mean"], abs=1e-9), (node, gpu, gi)
        assert row["p95_gr_engine_active"] == pytest.approx(want["p95"], abs=RATIO_TOLERANCE), (node, gpu, gi)
        assert row["idle_fraction"] == pytest.approx(want["idle"], abs=1e-12), (node, gpu, gi)
        assert row["max_memory_used_bytes"] == pytest.approx(want["memory"], abs=1), (node, gpu, gi)


def test_report_json_has_exactly_the_documented_keys(report: dict[str, Any]) -> None:
    """The JSON document and each instance carry exactly the keys automation relies on."""
    assert set(report) == {"window", "source", "instances", "gpus_today", "gpus_recommended", "energy", "layouts"}
    assert report["energy"] == {"kwh_estimate": None, "idle_share": None}  # no energy rule recorded here
    assert report["window"]["duration"] == "14d" and report["window"]["step"] == "5m"
    assert set(report["source"]) == {
        "url",
        "series",
        "rollup_days",
        "days",
        "retention",
        "retention_unknown_because",
        "requests",
        "bytes_received",
        "values_received",
    }
    assert report["source"]["retention"] == "30d" and report["source"]["rollup_days"] == 0
    assert report["source"]["series"].startswith("raw series: ")
    for row in report["instances"]:
        assert set(row) == {
            "node",
            "gpu",
            "gi",
            "profile",
            "mean_gr_engine_active",
            "p95_gr_engine_active",
            "max_memory_used_bytes",
            "idle_fraction",
            "energy_kwh_estimate",
            "recommendation",
        }
        assert set(row["recommendation"]) == {"action", "profile", "constraint", "reason"}


def test_report_reclaims_idle_resizes_light_keeps_busy_and_shrinks_the_fleet(report: dict[str, Any]) -> None:
    """Idle 3g reclaimed, 10% 3g resized to 1g.10gb, busy 3g kept; node-a packs into 3 GPUs instead of 4."""
    rows = {
        k: {"action": v["recommendation"]["action"], "profile": v["recommendation"]["profile"]}
        for k, v in by_key(report).items()
    }
    assert rows[("node-a:9401", 0, 1)] == {"action": "reclaim", "profile": None}
    assert rows[("node-a:9401", 0, 2)] == {"action": "resize", "profile": "1g.10gb"}
    assert rows[("node-a:9401", 1, 1)] == {"action": "keep", "profile": "3g.40gb"}
    assert rows[("node-a:9401", 2, 2)]["action"] == "reclaim"  # idle, though memory is held
    assert rows[("node-a:9401", 3, 1)] == {"action": "keep", "profile": "7g.80gb"}
    assert report["gpus_today"] == 5
    assert report["gpus_recommended"] == 4
    layouts = {entry["node"]: entry for entry in report["layouts"]}
    node_a = layouts["node-a:9401"]
    assert node_a["gpus_today"] == [0, 1, 2, 3]
    assert len(node_a["gpus"]) == 3
    packed = sorted(p["profile"] for gpu in node_a["gpus"] for p in gpu["placements"])
    assert packed == ["1g.10gb", "1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]
    moved = {(p["from"]["gpu"], p["from"]["gi"]): p["profile"] for gpu in node_a["gpus"] for p in gpu["placements"]}
    assert moved[(0, 2)] == "1g.10gb" and moved[(1, 1)] == "3g.40gb" and (0, 1) not in moved
    mig_parted = node_a["mig_parted"]
    assert mig_parted["version"] == "v1"
    (entries,) = mig_parted["mig-configs"].values()
    assert sum(sum(e["mig-devices"].values()) for e in entries) == 7


def test_report_markdown_summarises_gpus_slices_pods_and_configs(stack: Stack) -> None:
    """The Markdown report gives GPUs today vs recommended, slices reclaimed, pods seen and mig-parted YAML."""
    result = run_report(stack, "--window", "14d", "--output", "md")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "| MIG GPUs | 5 | 4 | 1 freed |" in text
    assert "| compute slices in instances | 34 | 24 | 10 reclaimed |" in text
    assert "| memory slices in instances | 39 | 28 | 11 reclaimed |" in text
    assert "node-a:9401: 4 x H100 80GB today, 3 recommended (1 freed)" in text
    assert "ml/trainer-0, ml/trainer-1" in text
    assert "mig-configs:" in text and "node-a-9401-h100-80gb-right-sized" in text


PROBE = """<script>
document.body.setAttribute("data-probe", JSON.stringify([...document.querySelectorAll("svg")].map(s => {
  const box = s.getBoundingClientRect();
  return {chart: (s.closest("[id]") || {}).id || "", width: box.width, height: box.height,
          drawn: s.getBBox().width, shapes: s.querySelectorAll("rect").length};
})));
</script></body>"""


def test_report_html_renders_its_charts_in_chromium(
    stack: Stack, tmp_path: Path, artifacts: Path, chromium: list[str]
) -> None:
    """Headless Chromium lays out the heatmap, the waste chart and every slice map of the self-contained page."""
    page = tmp_path / "report.html"
    result = run_report(stack, "--window", "14d", "--output", "html", "--out", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text), "the page must not load anything"
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE, 1))

    def browse(*args: str) -> str:
        done = subprocess.run(
            [*chromium, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    dom = browse("--dump-dom", probed.as_uri())
    match = re.search(r'data-probe="([^"]*)"', dom)
    assert match, dom[:500]
    charts = json.loads(html.unescape(match.group(1)))
    heatmaps = [c for c in charts if c["chart"] == "heatmap"]
    waste = [c for c in charts if c["chart"] == "waste"]
    maps = [c for c in charts if not c["chart"]]
    assert len(heatmaps) == 1 and heatmaps[0]["height"] > 14 * 14 and heatmaps[0]["drawn"] > 600
    assert heatmaps[0]["shapes"] >= 14
    assert len(waste) == 1 and waste[0]["drawn"] > 300
    assert len(maps) == 5 + 4  # today's GPUs and the recommended ones
    assert all(c["width"] > 300 and c["height"] > 80 and c["shapes"] >= 15 for c in maps)

    shot = artifacts / "report-capacity-review.png"
    shot.unlink(missing_ok=True)
    browse(f"--screenshot={shot}", "--window-size=1280,2600", page.as_uri())
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(header[16:20], "big") == 1280


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "60d"], "--window 60d is longer than the retention of Prometheus at {url} (30d)"),
        (["--window", "20d"], "holds mig_instance_gr_engine_active_ratio only from"),
        (["--window", "14d", "--match", 'instance="nope"'], 'no series for mig_instance_info{instance="nope"}'),
        (["--window", "1d", "--node-label", "node"], "have no 'node' label to tell nodes apart"),
    ],
)
def test_report_exits_2_when_the_data_cannot_answer(stack: Stack, args: list[str], message: str) -> None:
    """A window beyond retention or the data, a matcher with no series, a missing node label: one line, exit 2."""
    result = run_report(stack, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message.replace("{url}", stack.prom.url) in lines[0]
    if "20d" in args:
        assert "(14d of data, retention 30d): use --window 14d or less" in lines[0]


@pytest.fixture
async def proxy(stack: Stack, aiohttp_server: AiohttpServer) -> str:
    """A Thanos-like front: the API under /thanos/, only with the bearer token `s3cret` or basic auth ops:pü."""
    allowed = {"Bearer s3cret", "Basic b3BzOnDDvA=="}  # base64 of "ops:pü" in UTF-8, as curl -u sends it

    async def forward(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") not in allowed:
            return web.json_response({"status": "error", "error": "unauthorized"}, status=401)
        form = await request.post()
        async with (
            ClientSession() as session,
            session.request(
                request.method,
                f"{stack.prom.url}/api/v1/{request.match_info['tail']}",
                params=list(request.query.items()),
                data=dict(form),
            ) as upstream,
        ):
            return web.Response(body=await upstream.read(), status=upstream.status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/thanos/api/v1/{tail:.*}", forward)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/thanos"


async def test_report_reads_through_a_path_prefix_with_a_bearer_token(stack: Stack, proxy: str, tmp_path: Path) -> None:
    """Behind a path prefix with a bearer token or basic auth the report works; a wrong token is a clear error."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    argv = ["report", "--prometheus", proxy, "--window", "2d", "--end", str(stack.end), "--bearer-token-file"]
    result = await review(options_from(build_parser().parse_args([*argv, str(token)]), time.time()))
    assert result.gpus_today == 5
    assert {i.key.node for i in result.instances} == {"node-a:9401", "node-b:9401"}
    password = tmp_path / "password"
    password.write_text("pü")
    basic = [*argv[:-1], "--basic-auth-user", "ops", "--basic-auth-password-file", str(password)]
    assert (await review(options_from(build_parser().parse_args(basic), time.time()))).gpus_today == 5
    token.write_text("wrong")
    with pytest.raises(PrometheusError, match=r"refused the request \(HTTP 401\): check --bearer-token-file"):
        await review(options_from(build_parser().parse_args([*argv, str(token)]), time.time()))


def test_report_on_an_empty_prometheus_exits_2_naming_metric_and_url(tmp_path: Path) -> None:
    """A Prometheus that holds no exporter data: exit 2, naming the metric looked for and the URL."""
    with PrometheusServer(tmp_path / "empty") as prom:
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "report", "--prometheus", prom.url, "--window", "1h"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"no series for mig_instance_info or mig_instance_gr_engine_active_ratio at {prom.url}" in result.stderr
