"""The fleet dashboard at fleet size, against a real Prometheus holding a backfilled fleet and the rules' results.

16 dgx-h100 nodes have 14 days of history, 16 more the last 2 days; half of each report pods (tests/support/
fleet.py). Every fleet-dashboard query runs over the 14 days and returns data; its samples read (Prometheus'
`stats=all`), scaled from these node-days to 1,000 nodes x 30 days, stay inside the default 50 M-sample
limit. Over a 1-day window before the second half joined (16 nodes) and at the end (32 nodes), no query's
series count grows, where the raw per-instance query the old panels ran doubles.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exporter.contract import recorded
from exporter.sources.synthetic.patterns import Idle
from exporter.sources.synthetic.scenario import load
from tests.support.fleet import RETENTION, SCENARIO, build, holders, node_names
from tests.support.processes import PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("needs_prometheus")]

ROOT = Path(__file__).resolve().parent.parent
DAYS, SHORT_DAYS, NODES = 14, 2, 16
NODE_DAYS = NODES * DAYS + NODES * SHORT_DAYS
FLEET_NODE_DAYS = 1000 * 30
DEFAULT_MAX_SAMPLES = 50_000_000
DAY = 86400


@dataclass
class Fleet:
    prom: PrometheusServer
    end: int


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("fleet-dashboards")
    end = math.floor(time.time() / 3600) * 3600 - 3600
    first, second = node_names(0, NODES), node_names(NODES, NODES)
    build(workdir, [(first, first[: NODES // 2], DAYS), (second, second[: NODES // 2], SHORT_DAYS)], end)
    with PrometheusServer(workdir, extra_args=RETENTION) as prom:
        yield Fleet(prom, end)


@dataclass(frozen=True)
class Answer:
    series: int
    samples: int  # data.stats.samples.totalQueryableSamples


def fleet_targets() -> list[tuple[str, dict[str, Any]]]:
    dash = json.loads((ROOT / "dashboards" / "mig-fleet.json").read_text())
    return [(f"{p['title']} / {t['refId']}", {**t, "kind": p["type"]}) for p in dash["panels"] for t in p["targets"]]


def run(prom: PrometheusServer, target: dict[str, Any], at: float, range_s: int, top: int) -> Answer:
    """The query as Grafana sends it for a `range_s` time range ending at `at` (about 1,000 points a graph)."""
    values = {"__range": f"{range_s}s", "profile": ".*", "top": str(top)}
    expr = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], target["expr"])
    if target["instant"]:
        data = prom.api("query", query=expr, time=str(at), stats="all")
    else:
        step = max(300, range_s // 1000)
        data = prom.api("query_range", query=expr, start=str(at - range_s), end=str(at), step=str(step), stats="all")
    return Answer(len(data["result"]), int(data["stats"]["samples"]["totalQueryableSamples"]))


def test_every_fleet_query_over_14_days_returns_data_inside_the_default_limit_at_1000_nodes(fleet: Fleet) -> None:
    """Each query over 14 days answers with series; scaled to 1,000 nodes x 30 days it reads under 50 M samples."""
    targets = fleet_targets()
    assert len(targets) >= 25
    for name, target in targets:
        answer = run(fleet.prom, target, fleet.end, DAYS * DAY, 20)
        assert answer.series, f"{name}: no data"
        at_scale = answer.samples * FLEET_NODE_DAYS / NODE_DAYS
        assert at_scale < DEFAULT_MAX_SAMPLES, f"{name}: {at_scale:,.0f} samples at 1,000 nodes x 30 days"


def test_no_series_count_grows_when_the_fleet_doubles(fleet: Fleet) -> None:
    """Over a day of 16 nodes and a day of 32, every query returns as many series or fewer; the old raw query
    doubles."""
    before = fleet.end - SHORT_DAYS * DAY - 3600  # the second half has not joined yet
    for name, target in fleet_targets():
        small, large = (run(fleet.prom, target, at, DAY, 10) for at in (before, fleet.end))
        assert small.series > 0, name
        assert large.series <= small.series, f"{name}: {small.series} series at 16 nodes, {large.series} at 32"
    old = {"expr": "avg_over_time(mig_instance_gr_engine_active_ratio[$__range]) < 0.2", "instant": True}
    small, large = (run(fleet.prom, old, at, DAY, 10) for at in (before, fleet.end))
    assert large.series == 2 * small.series > 0


def test_held_free_and_unattributed_idle_capacity_apart(fleet: Fleet) -> None:
    """Idle slices pods hold count for their namespace; idle slices no pod holds on attributed nodes are free;
    nodes without attribution report theirs unattributed; the namespace alert's expression names only ml."""
    scenario = load(SCENARIO)
    idle = {
        (str(g), str(inst.gi)): inst.profile.compute_slices
        for g, spec in enumerate(scenario.gpus)
        for inst in spec.instances
        if all(isinstance(c.activity, Idle) for c in inst.compute_instances)
    }
    held = {(h.gpu, h.gi) for h in holders()}
    attributed = NODES  # half of each part
    want = {
        recorded.HELD: attributed * sum(s for k, s in idle.items() if k in held) / 7,
        recorded.FREE: attributed * sum(s for k, s in idle.items() if k not in held) / 7,
        recorded.UNATTRIBUTED: (2 * NODES - attributed) * sum(idle.values()) / 7,
    }
    result = fleet.prom.api(
        "query", query=f"sum by ({recorded.ALLOCATION}) ({recorded.PROFILE_IDLE_GPUS})", time=str(fleet.end)
    )["result"]
    got = {r["metric"][recorded.ALLOCATION]: float(r["value"][1]) for r in result}
    assert got == pytest.approx(want)
    assert want[recorded.HELD] > 0 and want[recorded.FREE] > 0
    namespaces = fleet.prom.api("query", query=f"{recorded.NAMESPACE_IDLE_GPUS} >= 1", time=str(fleet.end))["result"]
    assert [(r["metric"]["namespace"], float(r["value"][1])) for r in namespaces] == [
        ("ml", pytest.approx(want[recorded.HELD]))
    ]
