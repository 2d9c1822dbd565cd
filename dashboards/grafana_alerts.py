"""The alerts as Grafana-managed rules, in Grafana's file-provisioning format, in the Prometheus rules' structure.

Per-slice alerts (idle, under-used; severity info) in one group, the alerts that summarise (per node, per
namespace) in another. They query the recorded series of deploy/prometheus/mig-exporter.rules.yml, so
Prometheus must load those rules.

grafanalib's alert classes emit the ruler-API shape, so this writes the documented provisioning
structure directly: apiVersion 1, groups of {orgId, name, folder, interval, rules}, each rule with
uid, title, condition, data (queries and server-side expressions), for, labels and annotations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dashboards.common import ACTIVITY
from dashboards.prometheus_rules import xid_expr
from dashboards.thresholds import Thresholds
from exporter.contract import recorded
from exporter.contract import thresholds as limits
from exporter.contract.xids import ATTENTION_XIDS, XID_ALERT_WINDOW
from exporter.timespec import parse_duration

EXPRESSION_DATASOURCE = "__expr__"  # Grafana's server-side expressions (reduce, threshold)
FOLDER = "MIG"
INSTANCE_TEXT = (
    "GPU instance {{ $labels.gi }} ({{ $labels.profile }}) on GPU {{ $labels.gpu }} of node {{ $labels.instance }}"
)


def _query(ref: str, expr: str, datasource_uid: str, seconds: int) -> dict[str, Any]:
    return {
        "refId": ref,
        "relativeTimeRange": {"from": seconds, "to": 0},
        "datasourceUid": datasource_uid,
        "model": {"refId": ref, "expr": expr, "instant": True, "range": False, "intervalMs": 60000},
    }


def _expression(ref: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasourceUid": EXPRESSION_DATASOURCE,
        "model": {"refId": ref, "datasource": {"type": "__expr__", "uid": EXPRESSION_DATASOURCE}, **model},
    }


def _rule(
    uid: str,
    title: str,
    expr: str,
    evaluator: dict[str, Any],
    *,
    datasource_uid: str,
    window_s: int,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    panel: tuple[str, int] | None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            _query("A", expr, datasource_uid, window_s),
            _expression("B", {"type": "reduce", "expression": "A", "reducer": "last"}),
            _expression("C", {"type": "threshold", "expression": "B", "conditions": [{"evaluator": evaluator}]}),
        ],
        "noDataState": "OK",  # no GPU instances selected is not a problem; MigExporterDown covers a silent node
        "execErrState": "Error",
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook": f"README.md#{title.lower()}"},
        "isPaused": False,
    }
    if panel is not None:
        rule["dashboardUid"], rule["panelId"] = panel
    return rule


def alert_rules(
    th: Thresholds, datasource_uid: str, panels: Mapping[str, tuple[str, int]] | None = None
) -> dict[str, Any]:
    """The provisioning file's content; `panels` (alert title -> dashboard UID, panel id) links rules to panels."""
    linked = panels or {}
    idle_pct, underused_pct = f"{th.idle:.0%}", f"{th.underused:.0%}"
    idle = _rule(
        "mig-instance-idle",
        "MigInstanceIdle",
        f"avg_over_time({ACTIVITY}[5m])",
        {"type": "lt", "params": [th.idle]},
        datasource_uid=datasource_uid,
        window_s=600,
        for_=th.idle_for,
        severity="info",
        summary=(
            "Idle MIG slice {{ $labels.profile }} (GPU {{ $labels.gpu }}, GI {{ $labels.gi }}) "
            "on {{ $labels.instance }}"
        ),
        description=(
            f"{INSTANCE_TEXT} has been below {idle_pct} graphics-engine activity for {th.idle_for} "
            "(5-minute mean now {{ humanizePercentage $values.B.Value }}). Its slices are allocated but do no work."
        ),
        panel=linked.get("MigInstanceIdle"),
    )
    underused = _rule(
        "mig-instance-underutilized",
        "MigInstanceUnderutilized",
        f"avg_over_time({recorded.INSTANCE_ACTIVITY_ROLLUP_AVG1H}[1d])",
        {"type": "within_range", "params": [th.idle, th.underused]},
        datasource_uid=datasource_uid,
        window_s=86400,
        for_="1h",
        severity="info",
        summary=(
            "Under-used MIG slice {{ $labels.profile }} (GPU {{ $labels.gpu }}, GI {{ $labels.gi }}) "
            "on {{ $labels.instance }}"
        ),
        description=(
            f"{INSTANCE_TEXT} averaged {{{{ humanizePercentage $values.B.Value }}}} graphics-engine activity over the "
            f"last day (under {underused_pct}). A smaller MIG profile would likely serve its workload."
        ),
        panel=linked.get("MigInstanceUnderutilized"),
    )
    node = _rule(
        "mig-node-idle-capacity",
        "MigNodeIdleCapacity",
        f"{recorded.NODE_IDLE_GPUS} >= {limits.NODE_IDLE_GPUS}",
        {"type": "gt", "params": [0]},
        datasource_uid=datasource_uid,
        window_s=600,
        for_=limits.NODE_IDLE_FOR,
        severity="warning",
        summary='{{ printf "%.2f" $values.B.Value }} GPUs of idle MIG slices on {{ $labels.instance }}',
        description=(
            f"Node {{{{ $labels.instance }}}} has had at least {limits.NODE_IDLE_GPUS:g} GPU-equivalent (compute "
            f"slices / 7) of idle MIG slices for {limits.NODE_IDLE_FOR}; one alert per node instead of one per slice."
        ),
        panel=linked.get("MigNodeIdleCapacity"),
    )
    namespace = _rule(
        "mig-namespace-idle-slices",
        "MigNamespaceIdleSlices",
        f"{recorded.NAMESPACE_IDLE_GPUS} >= {limits.NAMESPACE_IDLE_GPUS}",
        {"type": "gt", "params": [0]},
        datasource_uid=datasource_uid,
        window_s=600,
        for_=limits.NAMESPACE_IDLE_FOR,
        severity="warning",
        summary='Namespace {{ $labels.namespace }} holds {{ printf "%.2f" $values.B.Value }} GPUs of idle MIG slices',
        description=(
            f"Pods of namespace {{{{ $labels.namespace }}}} have held at least {limits.NAMESPACE_IDLE_GPUS:g} "
            f"GPU-equivalent of MIG slices doing no work for {limits.NAMESPACE_IDLE_FOR}. Slices no pod holds are "
            "free capacity and not counted."
        ),
        panel=linked.get("MigNamespaceIdleSlices"),
    )
    return {
        "apiVersion": 1,
        "groups": [
            {"orgId": 1, "name": "mig-exporter slices", "folder": FOLDER, "interval": "1m", "rules": [idle, underused]},
            {"orgId": 1, "name": "mig-exporter fleet", "folder": FOLDER, "interval": "1m", "rules": [node, namespace]},
            {
                "orgId": 1,
                "name": "mig-exporter xid",
                "folder": FOLDER,
                "interval": "1m",
                "rules": xid_rules(datasource_uid),
            },
        ],
    }


def xid_rules(datasource_uid: str) -> list[dict[str, Any]]:
    """MigGpuXidError as Grafana rules: one per XID that needs attention, firing at once on any new one."""
    where = (
        "GPU {{ $labels.gpu }}{{ if $labels.gi }} GI {{ $labels.gi }}{{ end }}"
        "{{ if $labels.ci }} CI {{ $labels.ci }}{{ end }} of {{ $labels.instance }}"
    )
    rules = []
    for entry in ATTENTION_XIDS:
        rule = _rule(
            f"mig-gpu-xid-{entry.xid}",
            f"MigGpuXidError {entry.xid}",
            xid_expr(entry.xid),
            {"type": "gt", "params": [0]},
            datasource_uid=datasource_uid,
            window_s=int(parse_duration(XID_ALERT_WINDOW)) * 2,
            for_="0s",
            severity=entry.severity,
            summary=f"XID {entry.xid} on {where}: {entry.meaning}",
            description=(
                f"The driver reported XID {entry.xid} ({entry.meaning}) on {where} in the last "
                f"{XID_ALERT_WINDOW}. gi and ci name the MIG instance that raised it; neither means GPU-wide."
            ),
            panel=None,
        )
        rule["labels"]["xid"] = str(entry.xid)
        rule["annotations"] |= {"runbook": "README.md#miggpuxiderror", "action": entry.action}
        rules.append(rule)
    return rules
