"""The example Alertmanager configuration: valid for amtool, every shipped alert routed, node alerts inhibiting.

Routing is checked with `amtool config routes test`; inhibition against a real Alertmanager (Debian's
prometheus-alertmanager) given the alerts Prometheus would send.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import LOOPBACK, free_port, http_get, terminate, wait_until
from tests.support.tools import required_binary

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "deploy" / "prometheus" / "mig-exporter.rules.yml"


@pytest.fixture(scope="module")
def amtool() -> str:
    return required_binary("amtool", "prometheus-alertmanager")


def routed(amtool: str, labels: dict[str, str]) -> list[str]:
    """The receivers `amtool config routes test` resolves for an alert with `labels`."""
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def shipped_alerts() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_config_passes_amtool_check(amtool: str) -> None:
    """`amtool check-config` accepts the example, with its inhibit rules and receivers."""
    result = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("namespace", "receiver"),
    [("ml", "team-ml"), ("ml-research", "team-ml"), ("ranking", "team-search"), ("batch", "gpu-platform")],
)
def test_a_namespace_alert_goes_to_the_team_owning_the_namespace(amtool: str, namespace: str, receiver: str) -> None:
    """MigNamespaceIdleSlices reaches the team whose route matches the namespace; unclaimed ones the platform team."""
    labels = {"alertname": "MigNamespaceIdleSlices", "severity": "warning", "namespace": namespace}
    assert routed(amtool, labels) == [receiver]


def test_every_shipped_alert_reaches_one_receiver(amtool: str) -> None:
    """Per-slice (info) alerts go to the digest, the node alert and health alerts to the platform team, critical
    XIDs to the on-call."""
    expected = {"info": "gpu-digest", "warning": "gpu-platform", "critical": "gpu-oncall"}
    alerts = shipped_alerts()
    assert {"MigInstanceIdle", "MigNodeIdleCapacity", "MigNamespaceIdleSlices"} <= {a["alert"] for a in alerts}
    for alert in alerts:
        if alert["alert"] == "MigNamespaceIdleSlices":
            continue  # by namespace, above
        severity = alert["labels"]["severity"]
        labels = {"alertname": alert["alert"], "severity": severity, "instance": "node-a:9401"}
        assert routed(amtool, labels) == [expected[severity]], alert["alert"]
    assert next(a for a in alerts if a["alert"] == "MigInstanceIdle")["labels"]["severity"] == "info"
    assert "critical" in {a["labels"]["severity"] for a in alerts if a["alert"] == "MigGpuXidError"}


class Alertmanager:
    """A real Alertmanager on loopback with the example configuration (no clustering, no notifications out)."""

    def __init__(self, workdir: Path) -> None:
        binary = required_binary("prometheus-alertmanager", "prometheus-alertmanager")
        self.url = f"http://{LOOPBACK}:{free_port()}"
        self.args = [
            binary,
            f"--config.file={CONFIG}",
            f"--storage.path={workdir}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
            "--cluster.listen-address=",
        ]
        self.log = workdir / "alertmanager.log"

    def __enter__(self) -> Alertmanager:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: http_get(self.url + "/-/ready", timeout=1)[0] == 200, 30, "alertmanager ready")
        return self

    def __exit__(self, *exc: object) -> None:
        terminate(self.proc)

    def post(self, alerts: list[dict[str, str]]) -> None:
        body = json.dumps([{"labels": labels} for labels in alerts]).encode()
        request = urllib.request.Request(
            self.url + "/api/v2/alerts", body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def states(self) -> dict[tuple[str, str], str]:
        """(alertname, instance) -> active or suppressed."""
        _, _, body = http_get(self.url + "/api/v2/alerts", timeout=10)
        return {(a["labels"]["alertname"], a["labels"]["instance"]): a["status"]["state"] for a in json.loads(body)}


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    with Alertmanager(tmp_path) as am:
        yield am


def test_a_node_alert_inhibits_only_that_nodes_idle_slice_alerts(alertmanager: Alertmanager) -> None:
    """With MigNodeIdleCapacity firing for node-a, node-a's MigInstanceIdle is suppressed; node-b's and node-a's
    MigInstanceUnderutilized stay active."""
    slice_labels = {"job": "mig-exporter", "gpu": "0", "gi": "1", "profile": "1g.10gb", "severity": "info"}
    alertmanager.post(
        [
            {"alertname": "MigNodeIdleCapacity", "instance": "node-a:9401", "severity": "warning"},
            {"alertname": "MigInstanceIdle", "instance": "node-a:9401", **slice_labels},
            {"alertname": "MigInstanceIdle", "instance": "node-b:9401", **slice_labels},
            {"alertname": "MigInstanceUnderutilized", "instance": "node-a:9401", **slice_labels},
        ]
    )
    want = {
        ("MigNodeIdleCapacity", "node-a:9401"): "active",
        ("MigInstanceIdle", "node-a:9401"): "suppressed",
        ("MigInstanceIdle", "node-b:9401"): "active",
        ("MigInstanceUnderutilized", "node-a:9401"): "active",
    }
    got = wait_until(lambda: (s := alertmanager.states()) == want and s, 10, "inhibition applied")
    assert got == want
