"""End to end: the real `mig-exporter serve` process scraped by a real Prometheus server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.model import Field
from exporter.sources.synthetic.patterns import Idle, Steady
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.processes import ExporterProcess, PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_prometheus")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExporterProcess, PrometheusServer]]:
    workdir = tmp_path_factory.mktemp("stack")
    exporter = ExporterProcess(
        ["--source", "synthetic", "--scenario", "dgx-h100", "--interval", "0.5"], log_path=workdir / "exporter.log"
    )
    with exporter, PrometheusServer(workdir / "prom", targets=[f"127.0.0.1:{exporter.port}"]) as prom:
        prom.wait_for_series('up{job="mig-exporter"} == 1', timeout=30)
        prom.wait_for_series("mig_instance_gr_engine_active_ratio", min_count=24, timeout=30)
        yield exporter, prom


def constant_instances(sim: Simulator) -> dict[tuple[str, str], float]:
    """GPU instances whose every compute instance runs an idle or steady workload: their exact level."""
    out = {}
    for g, spec in enumerate(sim.scenario.gpus):
        for inst in spec.instances:
            if all(isinstance(c.activity, Idle | Steady) and not c.activity.noise for c in inst.compute_instances):
                out[(str(g), str(inst.gi))] = sim.gi_activity(g, inst.gi, 0)[Field.GR_ENGINE_ACTIVE]
    return out


def test_every_instance_is_scraped_with_contract_labels(stack: tuple[ExporterProcess, PrometheusServer]) -> None:
    """Prometheus holds one activity series per GPU instance of dgx-h100, labelled gpu, gi, profile."""
    _, prom = stack
    sim = Simulator(load("dgx-h100"))
    expected = {(str(g.index), str(i.gi), i.profile) for g, i in sim.topology().iter_instances()}
    result = prom.query("mig_instance_gr_engine_active_ratio")
    got = {(r["metric"]["gpu"], r["metric"]["gi"], r["metric"]["profile"]) for r in result}
    assert got == expected
    assert {k for r in result for k in r["metric"]} == {"__name__", "gpu", "gi", "profile", "instance", "job"}
    info = prom.query("mig_instance_info")
    assert {(r["metric"]["gpu"], r["metric"]["gi"], r["metric"]["placement_start"]) for r in info} == {
        (str(g.index), str(i.gi), str(i.placement_start)) for g, i in sim.topology().iter_instances()
    }
    assert len(prom.query("mig_compute_instance_info")) == 28


def test_idle_instances_read_zero_and_steady_ones_their_level(stack: tuple[ExporterProcess, PrometheusServer]) -> None:
    """Through PromQL, idle slices read exactly 0 and steady ones exactly their configured level."""
    _, prom = stack
    truth = constant_instances(Simulator(load("dgx-h100")))
    got = {
        (r["metric"]["gpu"], r["metric"]["gi"]): float(r["value"][1])
        for r in prom.query("mig_instance_gr_engine_active_ratio")
    }
    assert len(truth) >= 15
    for key, level in truth.items():
        assert got[key] == pytest.approx(level, abs=1e-9), key
    idle = {(r["metric"]["gpu"], r["metric"]["gi"]) for r in prom.query("mig_instance_gr_engine_active_ratio == 0")}
    assert idle & truth.keys() == {k for k, v in truth.items() if v == 0}  # bursty ones may read 0 too
    assert len(idle) >= 4


def test_slice_weighted_gpu_activity_matches_the_simulator(stack: tuple[ExporterProcess, PrometheusServer]) -> None:
    """The contract's slice-weighted sum gives each constant GPU's whole-GPU activity."""
    _, prom = stack
    sim = Simulator(load("dgx-h100"))
    result = prom.query(
        "sum by (gpu) (mig_instance_gr_engine_active_ratio * on (gpu, gi, profile) mig_instance_compute_slices) / 7"
    )
    got = {r["metric"]["gpu"]: float(r["value"][1]) for r in result}
    for gpu in ("1", "4"):  # GPUs whose instances are all constant
        assert got[gpu] == pytest.approx(sim.gpu_activity(int(gpu), 0)[Field.GR_ENGINE_ACTIVE]), gpu


def test_gpu_wide_series_and_exporter_health(stack: tuple[ExporterProcess, PrometheusServer]) -> None:
    """Power has one series per GPU; the MIG-disabled GPU has whole-GPU activity; the source is up."""
    _, prom = stack
    assert len(prom.query("mig_gpu_power_watts")) == 8
    whole = prom.query("mig_gpu_gr_engine_active_ratio")
    assert [(r["metric"]["gpu"], float(r["value"][1])) for r in whole] == [("7", 0.65)]
    assert float(prom.query('mig_exporter_source_up{source="synthetic"}')[0]["value"][1]) == 1.0
    age = prom.query("time() - mig_exporter_last_sample_timestamp_seconds")
    assert float(age[0]["value"][1]) < 10


def test_exporter_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM ends the daemon with exit code 0."""
    exporter = ExporterProcess(["--source", "synthetic"], log_path=tmp_path / "log").start()
    assert exporter.stop() == 0
