"""NVIDIA's dcgm-exporter Grafana dashboard, query by query, against a real Prometheus scraping `serve --names dcgm`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.processes import ExporterProcess, PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_prometheus")]

# Every panel expression of grafana/dcgm-exporter-dashboard.json in NVIDIA/dcgm-exporter, with the dashboard's
# $instance and $gpu variables set to `.*` (All).
SELECTOR = '{instance=~".*", gpu=~".*"}'
DASHBOARD_EXPRESSIONS = [
    f"DCGM_FI_DEV_GPU_TEMP{SELECTOR}",  # GPU Temperature
    f"avg(DCGM_FI_DEV_GPU_TEMP{SELECTOR})",  # GPU Avg. Temp
    f"DCGM_FI_DEV_POWER_USAGE{SELECTOR}",  # GPU Power Usage
    f"sum(DCGM_FI_DEV_POWER_USAGE{SELECTOR})",  # GPU Power Total
    f"DCGM_FI_DEV_SM_CLOCK{SELECTOR} * 1000000",  # GPU SM Clocks
    f"DCGM_FI_DEV_GPU_UTIL{SELECTOR}",  # GPU Utilization
    f"DCGM_FI_DEV_FB_USED{SELECTOR}",  # GPU Framebuffer Mem Used
    f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{SELECTOR}",  # Tensor Core Utilization
]
# Its template variables: label_values(DCGM_FI_DEV_GPU_TEMP, instance) and label_values(DCGM_FI_DEV_GPU_TEMP, gpu).
VARIABLES = {"instance": "DCGM_FI_DEV_GPU_TEMP", "gpu": "DCGM_FI_DEV_GPU_TEMP"}


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("dcgm-dashboard")
    exporter = ExporterProcess(
        ["--source", "synthetic", "--scenario", "dgx-h100", "--interval", "0.5", "--names", "dcgm"],
        env={"NODE_NAME": "dgx-07"},
        log_path=workdir / "exporter.log",
    )
    with exporter, PrometheusServer(workdir / "prom", targets=[f"127.0.0.1:{exporter.port}"]) as server:
        server.wait_for_series('up{job="mig-exporter"} == 1', timeout=30)
        server.wait_for_series("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", min_count=25, timeout=30)
        yield server


@pytest.mark.parametrize("expr", DASHBOARD_EXPRESSIONS)
def test_every_dashboard_expression_returns_data(prom: PrometheusServer, expr: str) -> None:
    """Each panel of NVIDIA's dashboard has data: none of its queries comes back empty."""
    assert prom.query(expr), expr


def test_dashboard_series_have_the_expected_shape(prom: PrometheusServer) -> None:
    """One temperature, power and SM clock per GPU; utilization for the MIG-disabled GPU; FB per slice."""
    gpus = {str(i) for i in range(8)}
    for name in ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK"):
        assert {r["metric"]["gpu"] for r in prom.query(name)} == gpus, name
    assert [r["metric"]["gpu"] for r in prom.query("DCGM_FI_DEV_GPU_UTIL")] == ["7"]
    clocks = [float(r["value"][1]) for r in prom.query(f"DCGM_FI_DEV_SM_CLOCK{SELECTOR} * 1000000")]
    assert all(3.45e8 <= hz <= 1.98e9 for hz in clocks), clocks
    assert len(prom.query("DCGM_FI_DEV_FB_USED")) == 25  # 24 GPU instances and GPU 7
    labels = prom.query('DCGM_FI_DEV_FB_USED{gpu="6", GPU_I_ID="3"}')[0]["metric"]
    assert labels["GPU_I_PROFILE"] == "1g.10gb"  # the 1g.10gb+me instance, as DCGM names it
    assert labels["Hostname"] == "dgx-07" and labels["DCGM_FI_DRIVER_VERSION"] == "550.127.05"
    assert labels["pci_bus_id"].startswith("00000000:") and labels["device"] == "nvidia6"


def test_dashboard_variables_list_the_node_and_every_gpu(prom: PrometheusServer) -> None:
    """label_values(DCGM_FI_DEV_GPU_TEMP, instance|gpu) list the exporter's target and its eight GPUs."""
    instances = prom.api("label/instance/values", **{"match[]": VARIABLES["instance"]})
    assert len(instances) == 1 and instances[0].startswith("127.0.0.1:")
    assert sorted(prom.api("label/gpu/values", **{"match[]": VARIABLES["gpu"]})) == [str(i) for i in range(8)]


def test_readme_join_repeats_gpu_wide_values_per_slice(prom: PrometheusServer) -> None:
    """README's PromQL join gives every GPU instance its GPU's power, as dcgm-exporter's repeated series did."""
    at = f"{time.time():.3f}"  # both queries at one instant
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    join = " ".join(readme.split("```promql\nDCGM_FI_DEV_POWER_USAGE", 1)[1].split("```", 1)[0].split())
    join = "DCGM_FI_DEV_POWER_USAGE " + join
    assert join.endswith('(0 * DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_ID!=""} + 1)'), join
    joined = prom.api("query", query=join, time=at)["result"]
    power = {
        r["metric"]["gpu"]: float(r["value"][1])
        for r in prom.api("query", query="DCGM_FI_DEV_POWER_USAGE", time=at)["result"]
    }
    sim = Simulator(load("dgx-h100"))
    assert sorted((r["metric"]["gpu"], r["metric"]["GPU_I_ID"]) for r in joined) == sorted(
        (str(g.index), str(i.gi)) for g, i in sim.topology().iter_instances()
    )
    for r in joined:
        assert float(r["value"][1]) == power[r["metric"]["gpu"]]
