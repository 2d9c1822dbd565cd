"""Pod attribution through a real `mig-exporter serve` process talking to a fake kubelet."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.model import Snapshot
from tests.support.kubelet import DGX_POD_INFO, FakeKubelet, dgx_pods, short_socket_dir
from tests.support.processes import ExporterProcess, PrometheusServer, wait_until
from tests.support.snapshots import fixed_snapshot

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
README_JOIN = re.compile(r"```promql\n(mig_instance_pod_info \* on .*?)```", re.DOTALL)
SERVE_ARGS = ["--source", "synthetic", "--scenario", "dgx-h100", "--interval", "0.2", "--kubelet-interval", "0.2"]


@pytest.fixture
def kubelet() -> Iterator[FakeKubelet]:
    snapshot: Snapshot = fixed_snapshot("dgx-h100")
    folder = short_socket_dir()
    with FakeKubelet(os.path.join(folder, "kubelet.sock"), dgx_pods(snapshot.topology)) as fake:
        yield fake
    shutil.rmtree(folder, ignore_errors=True)


def pod_info(text: str) -> set[tuple[str, ...]]:
    keys = ("gpu", "gi", "ci", "namespace", "pod", "container")
    return {
        tuple(s.labels[k] for k in keys)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mig_instance_pod_info"
    }


def test_serve_reports_pod_info_and_follows_the_kubelet_socket(kubelet: FakeKubelet, tmp_path: Path) -> None:
    """`serve --kubelet-socket` reports every pod's MIG devices, drops them when the socket goes, and recovers."""
    args = [*SERVE_ARGS, "--kubelet-socket", kubelet.socket_path]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as exporter:
        wait_until(lambda: pod_info(exporter.metrics()) == DGX_POD_INFO, 15, "pod_info for every held device")
        assert "mig_exporter_kubelet_up 1.0" in exporter.metrics()
        kubelet.stop()
        wait_until(lambda: not pod_info(text := exporter.metrics()) and "kubelet_up" not in text, 15, "attribution off")
        kubelet.start()
        wait_until(lambda: pod_info(exporter.metrics()) == DGX_POD_INFO, 15, "pod_info back")
    log = exporter.log()
    assert log.count("vanished") == 1 and log.count("answers") == 2, log


def test_serve_without_kubelet_socket_logs_once_and_serves(tmp_path: Path) -> None:
    """Without a kubelet socket the exporter serves as usual, with one log line and no pod series."""
    missing = tmp_path / "absent" / "kubelet.sock"
    with ExporterProcess([*SERVE_ARGS, "--kubelet-socket", str(missing)], log_path=tmp_path / "exporter.log") as exp:
        text = exp.metrics()
        wait_until(lambda: "looking again" in exp.log(), 10, "the attribution-off log line")
        wait_until(lambda: exp.metrics() != text, 5, "a few more samples")
    assert "mig_instance_pod_info{" not in text and "mig_exporter_kubelet_up" not in text
    assert exp.log().count("pod attribution") == 1, exp.log()


def test_serve_pod_labels_switch(kubelet: FakeKubelet, tmp_path: Path) -> None:
    """`--pod-labels` (a bare switch) puts the holder's labels on its instance series."""
    args = [*SERVE_ARGS, "--kubelet-socket", kubelet.socket_path, "--pod-labels"]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as exporter:
        line = (
            'mig_instance_gr_engine_active_ratio{container="trainer",gi="1",gpu="1",namespace="research",pod="train-a"'
        )
        wait_until(lambda: line in exporter.metrics(), 15, "pod labels on GPU 1 GI 1")


def test_serve_dcgm_names_get_pod_labels_with_attribution_on(kubelet: FakeKubelet, tmp_path: Path) -> None:
    """With a kubelet socket, `--names dcgm` series carry the holder's labels as dcgm-exporter's do; native ones
    get them only with --pod-labels."""
    args = [*SERVE_ARGS, "--kubelet-socket", kubelet.socket_path, "--names", "dcgm"]
    with ExporterProcess(args, env={"NODE_NAME": "dgx-07"}, log_path=tmp_path / "exporter.log") as exporter:

        def held() -> dict[str, str] | None:
            for family in text_string_to_metric_families(exporter.metrics()):
                for s in family.samples:
                    if s.name == "DCGM_FI_DEV_FB_USED" and (s.labels["gpu"], s.labels.get("GPU_I_ID")) == ("1", "1"):
                        return s.labels if "pod" in s.labels else None
            return None

        labels = wait_until(held, 15, "pod labels on GPU 1 GI 1's dcgm series")
        assert (labels["namespace"], labels["pod"], labels["container"]) == ("research", "train-a", "trainer")
        assert labels["Hostname"] == "dgx-07"
        assert 'mig_instance_gr_engine_active_ratio{gi="1",gpu="1",profile="3g.40gb"}' in exporter.metrics()


@pytest.mark.usefixtures("needs_prometheus")
def test_kubernetes_readme_join_names_the_pods_on_idle_slices(kubelet: FakeKubelet, tmp_path: Path) -> None:
    """README's PromQL join, run by a real Prometheus, names exactly the pods holding idle slices."""
    args = [*SERVE_ARGS, "--kubelet-socket", kubelet.socket_path]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as exporter:
        wait_until(lambda: pod_info(exporter.metrics()) == DGX_POD_INFO, 15, "pod_info for every held device")
        target = exporter.url.removeprefix("http://")
        with PrometheusServer(tmp_path / "prometheus", targets=[target]) as prometheus:
            prometheus.wait_for_series("mig_instance_pod_info", min_count=len(DGX_POD_INFO))
            join = README_JOIN.search((ROOT / "README.md").read_text())
            assert join, "README.md lost its pod join example"
            at = str(time.time())
            result = prometheus.api("query", query=join.group(1), time=at)["result"]
            idle_query = "avg_over_time(mig_instance_gr_engine_active_ratio[1h]) < 0.05"
            idle = {
                (r["metric"]["gpu"], r["metric"]["gi"])
                for r in prometheus.api("query", query=idle_query, time=at)["result"]
            }
            named = {(r["metric"]["gpu"], r["metric"]["gi"], r["metric"]["pod"]) for r in result}
            # GPU 0's bursty slice may be idle too at this moment; its two steady idle slices always are.
            assert named == {(gpu, gi, pod) for gpu, gi, _, _, pod, _ in DGX_POD_INFO if (gpu, gi) in idle}
            assert {("0", "3", "infer-3"), ("0", "7", "infer-7")} <= named
            assert ("1", "2") in idle  # idle, but held by no pod: absent from the join
            assert all(r["metric"]["profile"] == "1g.10gb" for r in result)
