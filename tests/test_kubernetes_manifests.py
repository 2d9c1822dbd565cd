"""The kustomize base renders offline, its core objects validate, its generated files are fresh, and it
agrees with the exporter (port, probes, socket, image tag); the Dockerfile and systemd unit are sound."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from exporter.cli.settings import OPTIONS
from exporter.contract import defaults
from exporter.http.connections import FD_RESERVE

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
CORE_KINDS = {"Namespace", "ServiceAccount", "DaemonSet", "Service", "ConfigMap"}
# pod-resources v1 List is GA since 1.28; check the oldest and newest schemas kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())

sys.path.insert(0, str(BASE))
import generate  # noqa: E402 - deploy/kubernetes/generate.py is a script, not a package


def default(key: str) -> str:
    value = next(o.default for o in OPTIONS if o.key == key)
    assert value is not None
    return value


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """`kubectl kustomize deploy/kubernetes`, by kind (each kind appears once)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # Debian's archive has no current kubectl; .ci/run installs it where a repository has it
        pytest.skip("kubectl not installed: install kubectl (with its built-in kustomize) to render deploy/kubernetes")
    result = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), [d["kind"] for d in docs]
    return by_kind


def container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = rendered["DaemonSet"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def test_kubernetes_generated_files_are_fresh() -> None:
    """The checked-in PrometheusRule and dashboards ConfigMap equal a fresh generation from their sources."""
    for path, content in generate.outputs().items():
        assert path.read_text() == content, f"{path.name} is stale: run python deploy/kubernetes/generate.py"
    assert generate.main(["--check"]) == 0


def test_kubernetes_generator_rejects_a_non_rules_file(tmp_path: Path) -> None:
    """The generator refuses a rules file with anything but `groups:` at the top, naming the file."""
    bad = tmp_path / "rules.yml"
    bad.write_text("rule_files: []\ngroups: []\n")
    with pytest.raises(ValueError, match=r"rules\.yml: expected a Prometheus rules file"):
        generate.prometheus_rule(bad)


def test_kubernetes_base_renders_every_object_in_its_namespace(rendered: dict[str, dict[str, Any]]) -> None:
    """kustomize renders the seven objects offline, all namespaced objects in mig-exporter."""
    assert set(rendered) == CORE_KINDS | {"ServiceMonitor", "PrometheusRule"}
    for kind, doc in rendered.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == rendered["Namespace"]["metadata"]["name"] == "mig-exporter"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_core_objects_validate(rendered: dict[str, dict[str, Any]], version: str) -> None:
    """Every core object passes strict schema validation, and a misspelt field would not."""
    for kind in CORE_KINDS:
        kubernetes_validate.validate(rendered[kind], version, strict=True)
    broken = copy.deepcopy(rendered["DaemonSet"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_kubernetes_daemonset_matches_the_exporter(rendered: dict[str, dict[str, Any]]) -> None:
    """Port, probes, kubelet socket mount, GPU env, image tag and node placement agree with the exporter."""
    c = container(rendered)
    pod = rendered["DaemonSet"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}  # the Hostname label of --names dcgm
    assert env["NVIDIA_VISIBLE_DEVICES"] == env["NVIDIA_MIG_MONITOR_DEVICES"] == "all"
    assert env["MIG_EXPORTER_LISTEN"] == default("listen")
    assert c["ports"] == [{"name": "metrics", "containerPort": 9401, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["image"] == f"mig-exporter:{__version__}"
    socket = env["MIG_EXPORTER_KUBELET_SOCKET"]
    assert socket == default("kubelet_socket")
    mount = next(m for m in c["volumeMounts"] if m["name"] == "pod-resources")
    volume = next(v for v in pod["volumes"] if v["name"] == "pod-resources")
    assert mount["readOnly"] is True and mount["mountPath"] == volume["hostPath"]["path"] == os.path.dirname(socket)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"requests", "limits"} <= set(c["resources"])


def test_kubernetes_security_context_is_restrictive(rendered: dict[str, dict[str, Any]]) -> None:
    """Only SYS_ADMIN (MIG monitoring) is kept: read-only root, no privilege escalation, no API token."""
    c = container(rendered)
    pod = rendered["DaemonSet"]["spec"]["template"]["spec"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
    }
    assert "privileged" not in c["securityContext"] and not pod.get("hostPID") and not pod.get("hostNetwork")
    assert pod["automountServiceAccountToken"] is False
    assert rendered["ServiceAccount"]["automountServiceAccountToken"] is False


def test_kubernetes_monitoring_objects(rendered: dict[str, dict[str, Any]]) -> None:
    """The ServiceMonitor scrapes the Service's port; the rules equal deploy/prometheus; the dashboards ride along."""
    service, monitor = rendered["Service"], rendered["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert (
        service["spec"]["selector"].items() <= rendered["DaemonSet"]["spec"]["template"]["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "mig-exporter.rules.yml").read_text())
    assert rendered["PrometheusRule"]["spec"] == rules
    configmap = rendered["ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboards = sorted((ROOT / "dashboards").glob("*.json"))
    assert dashboards and sorted(configmap["data"]) == [d.name for d in dashboards]
    for d in dashboards:
        assert json.loads(configmap["data"][d.name]) == json.loads(d.read_text())


def test_kubernetes_dockerfile_sources_and_port() -> None:
    """The Dockerfile copies only files that exist, installs the nvml extra, runs non-root and exposes 9401."""
    text = (ROOT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE):
        *sources, _dest = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert "['optional-dependencies']['nvml']" in text  # the nvml extra (tests/test_packaging.py runs that listing)
    assert re.search(r"^EXPOSE 9401$", text, flags=re.MULTILINE)
    assert re.search(r"^USER (?!0\b|root\b)\S+", text, flags=re.MULTILINE)
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) >= 2


def test_kubernetes_systemd_unit_runs_serve() -> None:
    """The bare-metal unit runs `mig-exporter serve` under a dynamic user with an open-file limit the default
    connection limit fits under, and verifies with systemd-analyze."""
    unit = ROOT / "deploy" / "systemd" / "mig-exporter.service"
    text = unit.read_text()
    exec_start = re.search(r"^ExecStart=(\S+) serve\b", text, flags=re.MULTILINE)
    assert exec_start, "ExecStart must run `mig-exporter serve`"
    open_files = re.search(r"^LimitNOFILE=(\d+)$", text, flags=re.MULTILINE)
    assert open_files, "the unit must set LimitNOFILE (systemd's default soft limit is 1024)"
    assert int(open_files.group(1)) >= defaults.HTTP_MAX_CONNECTIONS + FD_RESERVE  # the default limit fits
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    # verify also checks that ExecStart's binary exists on this machine: ignore only that complaint.
    problems = [line for line in result.stderr.splitlines() if line.strip() and exec_start.group(1) not in line]
    assert not problems, result.stderr
