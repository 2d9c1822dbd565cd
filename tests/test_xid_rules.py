"""The XID alert: one Prometheus and one Grafana rule per XID needing attention, each with its runbook line."""

from __future__ import annotations

from pathlib import Path

import yaml

from exporter.contract.xids import ATTENTION_XIDS

ROOT = Path(__file__).resolve().parent.parent


def test_each_attention_xid_has_a_rule_with_its_action_in_both_rule_files() -> None:
    """Prometheus and Grafana rule files carry one MigGpuXidError per XID, with its severity and action."""
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/mig-exporter.rules.yml").read_text())
    grafana = yaml.safe_load((ROOT / "deploy/grafana/provisioning/alerting/mig-exporter.yaml").read_text())
    rules = [r for g in prometheus["groups"] for r in g["rules"] if r.get("alert") == "MigGpuXidError"]
    managed = [r for g in grafana["groups"] for r in g["rules"] if r["title"].startswith("MigGpuXidError ")]
    expected = {(str(x.xid), x.severity, x.action) for x in ATTENTION_XIDS}
    for found in (rules, managed):
        got = {(r["labels"]["xid"], r["labels"]["severity"], r["annotations"]["action"]) for r in found}
        assert got == expected and len(found) == len(expected)
    for rule in rules:
        assert f'xid="{rule["labels"]["xid"]}"' in rule["expr"] and rule["for"] == "0m"


def test_readme_runbook_lists_every_attention_xid() -> None:
    """README's MigGpuXidError runbook has a row per XID with the contract's meaning and action."""
    runbook = (ROOT / "README.md").read_text().split("#### MigGpuXidError", 1)[1].split("\n## ", 1)[0]
    for x in ATTENTION_XIDS:
        assert f"| {x.xid} | {x.meaning} | {x.severity} | {x.action} |" in runbook
