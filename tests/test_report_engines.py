"""The capacity review against real engines: the same decisions as the raw-step method, whatever serves the data.

A seeded fleet of five nodes (capacity-review, fleet-review twice with different seeds, demo, dgx-h100) has
five days of history at a 5m step; the review covers the last four. Each review is compared with the one
bench/raw_steps.py builds from every step pulled to the client: on Prometheus from raw series, on
VictoriaMetrics (loaded through /api/v1/import/prometheus) from raw series, on Prometheus from the 5m rollup
rules (recorded over the history with promtool) alone and beside raw series, and on a Prometheus whose
--query.max-samples refuses the review's queries until they are split.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from bench import raw_steps
from exporter.cli.main import build_parser
from exporter.cli.report import ReportOptions, options_from, review
from exporter.report.collect import Collector
from exporter.report.prometheus import PrometheusClient
from exporter.report.render_json import review_document
from exporter.report.review import Review, ReviewBuilder
from exporter.sources.synthetic.history import Node, sample_times
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.history import backfill, record_rules
from tests.support.processes import PrometheusServer
from tests.support.victoria import VictoriaMetrics

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_prometheus")]

SCENARIOS = Path(__file__).parent / "scenarios"
RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "mig-exporter.rules.yml"
STEP = 300
DAY = 86400
HISTORY_DAYS = 5
ROLLUP_DAYS = 2.5  # the rollups are recorded over the history's last 2.5 days only
P95_SHOWN = 0.002  # the shown p95: the server's interpolated quantile against the old 1/1000 histogram


@dataclass
class Fleet:
    end: int
    history: Path
    data: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """Five nodes' history, written once (kept for VictoriaMetrics) and backfilled into a TSDB directory."""
    workdir = tmp_path_factory.mktemp("fleet")
    end = math.floor(time.time() / STEP) * STEP - STEP
    review_node = load(str(SCENARIOS / "fleet-review.yaml"))
    scenarios = {
        "node-a:9401": load(str(SCENARIOS / "capacity-review.yaml")),
        "node-b:9401": review_node,
        "node-c:9401": replace(review_node, seed=1234),
        "node-d:9401": load("demo"),
        "node-e:9401": load("dgx-h100"),
    }
    nodes = [Node(name, Simulator(s)) for name, s in scenarios.items()]
    history = workdir / "history.om"
    backfill(nodes, sample_times(end - HISTORY_DAYS * DAY, end, STEP), workdir / "data", keep=history)
    return Fleet(end, history, workdir / "data")


def copy_of(fleet: Fleet, workdir: Path) -> Path:
    """A Prometheus working directory holding the fleet's blocks (a server locks its own data directory)."""
    shutil.copytree(fleet.data, workdir / "data", ignore=shutil.ignore_patterns("lock", "wal", "chunks_head"))
    return workdir


RETENTION = ["--storage.tsdb.retention.time=30d"]


@pytest.fixture(scope="module")
def prometheus(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with PrometheusServer(copy_of(fleet, tmp_path_factory.mktemp("prometheus")), extra_args=RETENTION) as prom:
        yield prom


@pytest.fixture(scope="module")
def rollups(
    fleet: Fleet, prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A Prometheus with the raw history and the 5m rollup rules recorded over its last 2.5 days."""
    workdir = copy_of(fleet, tmp_path_factory.mktemp("rollups"))
    rules = yaml.safe_load(RULES.read_text())
    only = workdir / "rollups.yml"
    only.write_text(yaml.safe_dump({"groups": [g for g in rules["groups"] if g["name"] == "mig-exporter.rollup.5m"]}))
    record_rules(prometheus.url, only, fleet.end - ROLLUP_DAYS * DAY, fleet.end, workdir / "data")
    with PrometheusServer(workdir, extra_args=RETENTION) as prom:
        yield prom


@pytest.fixture(scope="module")
def victoria(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics(tmp_path_factory.mktemp("victoria")) as vm:
        vm.load(fleet.history)
        yield vm


def options(url: str, end: float, window: str = "4d", *extra: str) -> ReportOptions:
    argv = ["report", "--prometheus", url, "--window", window, "--end", str(end), "--output", "json", *extra]
    return options_from(build_parser().parse_args(argv), time.time())


async def reference(url: str, end: float, window: str = "4d") -> Review:
    """The review built from every step pulled to the client, as before."""
    result, _ = await raw_steps.review(options(url, end, window))
    return result


def assert_same_review(got: Review, want: Review) -> None:
    """Identical decisions and layouts; means, idle shares and peak memory equal; the shown p95 close."""
    assert [i.key for i in got.instances] == [i.key for i in want.instances]
    for mine, theirs in zip(got.instances, want.instances, strict=True):
        assert mine.recommendation == theirs.recommendation, mine.key
        assert (mine.summary is None) == (theirs.summary is None), mine.key
        if mine.summary is None or theirs.summary is None:
            continue
        assert mine.summary.mean == pytest.approx(theirs.summary.mean, abs=1e-9), mine.key
        assert mine.summary.idle_fraction == theirs.summary.idle_fraction, mine.key
        assert mine.summary.memory_max_bytes == theirs.summary.memory_max_bytes, mine.key
        assert mine.summary.p95 == pytest.approx(theirs.summary.p95, abs=P95_SHOWN), mine.key
        assert mine.summary.active_days == theirs.summary.active_days, mine.key
    mine_doc, theirs_doc = review_document(got), review_document(want)
    assert mine_doc["layouts"] == theirs_doc["layouts"]
    assert (got.gpus_today, got.gpus_recommended) == (want.gpus_today, want.gpus_recommended)


async def test_report_decisions_match_the_raw_step_method_on_prometheus(
    fleet: Fleet, prometheus: PrometheusServer
) -> None:
    """From raw series on Prometheus, every verdict equals the one from every step pulled to the client."""
    got, want = await review(options(prometheus.url, fleet.end)), await reference(prometheus.url, fleet.end)
    assert_same_review(got, want)
    assert got.provenance is not None and got.provenance.rollup_days == 0
    verdicts = {(i.recommendation.action, i.recommendation.constraint) for i in got.instances}
    for expected in [
        ("time-share", "periodic"),
        ("reclaim", "idle"),
        ("resize", "compute"),
        ("resize", "memory"),
        ("keep", "memory"),
        ("keep", "compute"),
        ("keep", "+me"),
    ]:
        assert expected in verdicts, (expected, verdicts)
    assert got.provenance.values / len(got.instances) / 4 <= 30  # values received per instance per day


async def test_report_decisions_match_the_raw_step_method_on_victoriametrics(
    fleet: Fleet, victoria: VictoriaMetrics, prometheus: PrometheusServer
) -> None:
    """VictoriaMetrics gives the review the raw-step method gives on it, and Prometheus' review; its retention is
    unknown, and the report says so."""
    got = await review(options(victoria.url, fleet.end))
    assert_same_review(got, await reference(victoria.url, fleet.end))
    assert_same_review(got, await review(options(prometheus.url, fleet.end)))
    assert got.provenance is not None and got.provenance.retention.value is None
    assert "does not serve /api/v1/status/runtimeinfo" in got.provenance.retention.unknown_because


def rollup_lag(server: PrometheusServer, end: float) -> int:
    """How far back the raw-step grid matching the rollups lies: the rule group evaluates `phase` seconds into
    each step, so a step's rollup sample summarises the raw step before (backfilled samples sit on the grid)."""
    (sample,) = server.api(
        "query", query=f"timestamp({ROLLUP}{{gpu='0',gi='1',instance='node-a:9401'}})", time=str(end)
    )["result"]
    phase = float(sample["value"][1]) % STEP
    return STEP if phase > 0 else 0


ROLLUP = "instance_gpu_gi:mig_instance_gr_engine_active_ratio:avg5m"


async def test_report_reads_the_rollups_and_decides_as_the_raw_step_method(
    fleet: Fleet, rollups: PrometheusServer
) -> None:
    """Where the 5m rollups cover the window the report reads them alone, with the raw-step method's decisions
    on the rollups' windows; beside raw series, in a window they cover in part, too."""
    lag = rollup_lag(rollups, fleet.end)
    covered = await review(options(rollups.url, fleet.end, "2d"))
    assert covered.provenance is not None and covered.provenance.rollup_days == covered.provenance.days
    assert covered.provenance.rollup_note.endswith("(the rollup rules)")
    assert_same_review(covered, await reference(rollups.url, fleet.end - lag, "2d"))
    mixed = await review(options(rollups.url, fleet.end))
    assert mixed.provenance is not None and 0 < mixed.provenance.rollup_days < mixed.provenance.days
    assert "raw series before" in mixed.provenance.rollup_note
    assert_same_review(mixed, await reference(rollups.url, fleet.end - lag))


async def test_report_retries_what_the_server_refuses_for_size_and_completes(
    fleet: Fleet, prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A Prometheus whose --query.max-samples refuses the review's queries (HTTP 422) gets them in smaller pieces;
    the review is the one a server without the limit gives."""
    limit = ["--query.max-samples=40000", *RETENTION]
    with PrometheusServer(copy_of(fleet, tmp_path_factory.mktemp("limited")), extra_args=limit) as small:
        got = await review(options(small.url, fleet.end))
    free = await review(options(prometheus.url, fleet.end))
    assert_same_review(got, free)  # sums add up in another order, the shown p95 comes from more spans
    assert got.provenance is not None and free.provenance is not None
    assert got.provenance.requests > free.provenance.requests  # the refused queries went again, in pieces


async def test_report_is_the_same_whatever_the_shards(fleet: Fleet, prometheus: PrometheusServer) -> None:
    """One node per shard, all in flight at once, gives the review the default shards of eight give."""
    opts = options(prometheus.url, fleet.end)
    builder = ReviewBuilder(opts.grid, opts.policy)
    async with PrometheusClient(opts.url) as client:
        collector = Collector(client, opts.grid, opts.policy, shard_nodes=1, shards_in_flight=5)
        await collector.collect(builder.add)
    assert_same_review(builder.finish(opts.url), await review(opts))
