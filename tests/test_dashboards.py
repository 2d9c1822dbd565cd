"""Dashboards and Grafana provisioning: generated files current, contract metrics only, documented formats."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build
from dashboards.fleet import fleet_dashboard
from dashboards.grafana_alerts import alert_rules
from dashboards.prometheus_rules import rules_file
from dashboards.thresholds import Thresholds
from exporter.contract import recorded as rollups

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = {
    "mig-fleet": ROOT / "dashboards" / "mig-fleet.json",
    "mig-node": ROOT / "dashboards" / "mig-node.json",
    "mig-instance": ROOT / "dashboards" / "mig-instance.json",
}
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
RULES = ROOT / "deploy" / "prometheus" / "mig-exporter.rules.yml"
METRIC = re.compile(r"\b(?:mig_[a-z0-9_]+|[a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARDS[name].read_text())
    return data


def panel_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def prometheus_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_checked_in_files_match_the_generator() -> None:
    """`python -m dashboards.build --check` passes: the JSON and YAML in git are what the sources generate."""
    assert build.main(["--check"]) == 0


def test_check_fails_naming_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After a hand edit of a generated file, --check exits 1 naming it, and a build repairs it."""
    assert build.main([], root=tmp_path) == 0
    fleet = tmp_path / "dashboards" / "mig-fleet.json"
    fleet.write_text(fleet.read_text().replace("MIG fleet", "My fleet"))
    assert build.main(["--check"], root=tmp_path) == 1
    assert "dashboards/mig-fleet.json" in capsys.readouterr().err
    assert build.main([], root=tmp_path) == 0
    assert build.main(["--check"], root=tmp_path) == 0


def test_bad_threshold_options_exit_2_naming_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    """A threshold outside (0, 1] or an idle threshold above the under-used one is refused with exit code 2."""
    for argv, words in (
        (["--idle-threshold", "1.5"], "'1.5' is not a ratio"),
        (["--idle-threshold", "0.3", "--underused-threshold", "0.2"], "idle=0.3, underused=0.2"),
    ):
        with pytest.raises(SystemExit) as exc:
            build.main(["--check", *argv])
        assert exc.value.code == 2
        assert words in capsys.readouterr().err


def test_generator_defaults_equal_the_alert_rule_thresholds() -> None:
    """The dashboards' idle and under-used thresholds default to the numbers in the Prometheus alert rules."""
    rules = {r["alert"]: r["expr"] for r in prometheus_rules() if "alert" in r}
    th = Thresholds()
    assert re.search(rf"\[5m\]\) < {th.idle}\b", rules["MigInstanceIdle"])
    assert re.search(rf"\[1d\]\) < {th.underused}\b", rules["MigInstanceUnderutilized"])
    assert re.search(rf"\[1d\]\) >= {th.idle}\b", rules["MigInstanceUnderutilized"])
    assert next(r["for"] for r in prometheus_rules() if r.get("alert") == "MigInstanceIdle") == th.idle_for


def test_thresholds_are_parameters_of_the_generator() -> None:
    """Other thresholds change the dashboard queries, colours and the Grafana alert conditions."""
    th = Thresholds(idle=0.1, underused=0.35, idle_for="2h")
    text = json.dumps(build.dashboard_json(fleet_dashboard(th)))
    assert "< 0.35 >= 0.1" in text and "0.05" not in text and "0.2" not in text
    assert '"value": 0.1' in text  # the colour steps
    recorded_idle = rules_file(th)  # the fleet panels' idle counts come from the rules' idle test
    assert "avg5m < bool 0.1\n" in recorded_idle and "< bool 0.05" not in recorded_idle
    rules = alert_rules(th, "prom")["groups"][0]["rules"]
    assert rules[0]["for"] == "2h"
    assert rules[0]["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == [0.1]
    assert rules[1]["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == [0.1, 0.35]


def test_panels_use_only_contract_metrics_and_shipped_recording_rules() -> None:
    """Every metric a panel or Grafana alert queries is in README's metric table or a shipped recording rule."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    contract = set(re.findall(r"`(mig_[a-z_]+)`", table))
    contract |= {"mig_instance_pod_info"}  # ARCHITECTURE.md's contract; served once pod attribution is on
    recorded = {r["record"] for r in prometheus_rules() if "record" in r}
    grafana = yaml.safe_load((PROVISIONING / "alerting" / "mig-exporter.yaml").read_text())
    exprs = [e for name in DASHBOARDS for e in panel_exprs(load(name))]
    exprs += [
        d["model"]["expr"] for g in grafana["groups"] for r in g["rules"] for d in r["data"] if "expr" in d["model"]
    ]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used <= contract | recorded, used - contract - recorded
    # every recording rule is shown somewhere; the 5m rollups are read by the capacity review (tests/test_report_*),
    # the 5-minute power minima only by the idle-floor rule
    assert recorded - {*rollups.ROLLUPS_5M, rollups.GPU_POWER_MIN5M} <= used


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_json_is_well_formed_for_grafana(name: str) -> None:
    """Unique uid and panel ids, panels inside the 24-column grid without overlap, queries on the chosen data source."""
    dash = load(name)
    assert dash["uid"] == name
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(refs)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"


def test_fleet_dashboard_has_the_promised_variables_and_panels() -> None:
    """MIG fleet: profile and top-N variables; idle capacity now (held and free apart), over time, the worst."""
    dash = load("mig-fleet")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert list(variables) == ["datasource", "profile", "top"]
    assert variables["top"]["type"] == "custom" and variables["top"]["current"]["value"] == "20"
    types = {p["title"]: p["type"] for p in dash["panels"]}
    assert types == {
        "GPU instances": "stat",
        "Idle instances": "stat",
        "Idle capacity": "stat",
        "Idle, held by pods": "stat",
        "Idle, free": "stat",
        "Idle memory": "stat",
        "Under-used instances": "stat",
        "Fleet activity": "stat",
        "Idle capacity by allocation": "timeseries",
        "Idle capacity by profile": "timeseries",
        "Activity by profile": "timeseries",
        "Fleet activity over time": "timeseries",
        "Worst GPU instances": "table",
        "Nodes with the most idle capacity": "table",
        "Namespaces holding idle slices": "table",
    }
    worst = next(p for p in dash["panels"] if p["title"] == "Worst GPU instances")
    renamed = worst["transformations"][1]["options"]["renameByName"]
    assert {"instance": "node", "Value #A": "unused GPUs (range)"}.items() <= renamed.items()
    assert any("mig_instance_pod_info" in t["expr"] for t in worst["targets"])
    assert any('allocation="held"' in t["expr"] for p in dash["panels"] for t in p["targets"])
    assert any('allocation="free"' in t["expr"] for p in dash["panels"] for t in p["targets"])


RAW_RANGE = re.compile(r"\b(mig_[a-z0-9_]+)(\{[^}]*\})?\[")


def test_fleet_queries_are_bounded_whatever_the_fleet_size() -> None:
    """No fleet query reads a raw series over a range; tables hold the top $top; graphs group by bounded labels."""
    dash = load("mig-fleet")
    for panel in dash["panels"]:
        for t in panel["targets"]:
            assert not RAW_RANGE.search(t["expr"]), (panel["title"], t["expr"])
            if panel["type"] == "table":
                assert "topk($top, " in t["expr"], panel["title"]
            if panel["type"] == "timeseries":
                by = set(re.findall(r"\bby \(([^)]*)\)", t["expr"]))
                assert by <= {"allocation", "profile"}, (panel["title"], by)
                assert re.search(r"profile(_allocation)?:mig_", t["expr"]), panel["title"]
    assert not any(p["type"] == "state-timeline" for p in dash["panels"])


def test_fleet_tables_drill_down_to_the_node_and_instance_dashboards() -> None:
    """The worst-instances table links nodes to MIG node and GIs to MIG instance; the nodes table links nodes."""
    dash = load("mig-fleet")
    tables = {p["title"]: p for p in dash["panels"] if p["type"] == "table"}

    def links(title: str) -> dict[str, str]:
        overrides = tables[title]["fieldConfig"]["overrides"]
        return {
            o["matcher"]["options"]: prop["value"][0]["url"]
            for o in overrides
            for prop in o["properties"]
            if prop["id"] == "links"
        }

    instance = links("Worst GPU instances")
    assert instance["node"].startswith("/d/mig-node/") and "var-instance=${__data.fields.node}" in instance["node"]
    assert instance["gi"].startswith("/d/mig-instance/") and "var-gi=${__data.fields.gi}" in instance["gi"]
    assert links("Nodes with the most idle capacity")["node"] == instance["node"]
    node = load("mig-node")
    assert {v["name"] for v in node["templating"]["list"]} == {"datasource", "instance"}
    node_tables = [p for p in node["panels"] if p["type"] == "table"]
    assert any("/d/mig-instance/" in json.dumps(t["fieldConfig"]["overrides"]) for t in node_tables)


def test_instance_dashboard_shows_one_instance() -> None:
    """MIG instance: one node/GPU/GI chosen; activity ratios, memory used vs total, compute instances and pods."""
    dash = load("mig-instance")
    variables = dash["templating"]["list"]
    assert [v["name"] for v in variables] == ["datasource", "instance", "gpu", "gi"]
    assert not any(v["multi"] for v in variables[1:])
    exprs = panel_exprs(dash)
    for metric in (
        "mig_instance_gr_engine_active_ratio",
        "mig_instance_sm_active_ratio",
        "mig_instance_memory_used_bytes",
        "mig_instance_memory_total_bytes",
        "mig_compute_instance_info",
        "mig_compute_instance_gr_engine_active_ratio",
        "mig_instance_pod_info",
    ):
        assert any(metric + '{instance="$instance", gpu="$gpu", gi="$gi"}' in e for e in exprs), metric


# Grafana's file-provisioning format for alert rules, as documented in "Create and manage alerting resources
# using file provisioning" (grafana.com/docs/grafana/latest/alerting/set-up/provision-alerting-resources/
# file-provisioning/) and read by pkg/services/provisioning/alerting (AlertRuleGroupV1, AlertRuleV1, QueryV1).
GROUP_KEYS = {"orgId", "name", "folder", "interval", "rules"}
RULE_REQUIRED = {"uid", "title", "condition", "data"}
RULE_KEYS = RULE_REQUIRED | {
    "dashboardUid",
    "panelId",
    "noDataState",
    "execErrState",
    "for",
    "annotations",
    "labels",
    "isPaused",
}
QUERY_KEYS = {"refId", "queryType", "relativeTimeRange", "datasourceUid", "model"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def test_grafana_alert_rules_follow_the_documented_provisioning_format() -> None:
    """The Grafana-managed idle alerts file has Grafana's documented keys, types, states and references."""
    doc = yaml.safe_load((PROVISIONING / "alerting" / "mig-exporter.yaml").read_text())
    assert doc["apiVersion"] == 1 and set(doc) <= {"apiVersion", "groups", "deleteRules"}
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())["datasources"]
    panels = {(d["uid"], p["id"]) for d in map(load, DASHBOARDS) for p in d["panels"]}
    titles = []
    for group in doc["groups"]:
        assert set(group) == GROUP_KEYS
        assert isinstance(group["orgId"], int) and group["name"] and group["folder"]
        assert DURATION.match(group["interval"])
        for rule in group["rules"]:
            assert RULE_REQUIRED <= set(rule) <= RULE_KEYS, set(rule) ^ RULE_KEYS
            assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", rule["uid"])
            titles.append(rule["title"])
            assert DURATION.match(rule["for"])
            assert rule["noDataState"] in {"Alerting", "NoData", "OK"}
            assert rule["execErrState"] in {"Alerting", "Error", "OK"}
            refs = [q["refId"] for q in rule["data"]]
            assert rule["condition"] in refs and len(refs) == len(set(refs))
            for query in rule["data"]:
                assert set(query) <= QUERY_KEYS and query["model"]["refId"] == query["refId"]
                if query["datasourceUid"] == "__expr__":
                    assert query["model"]["type"] in {"reduce", "threshold", "math", "resample", "classic_conditions"}
                    assert query["model"]["expression"] in refs
                else:
                    assert query["datasourceUid"] in {d["uid"] for d in datasources}
                    assert query["relativeTimeRange"]["from"] > query["relativeTimeRange"]["to"] == 0
                    assert query["model"]["expr"]
            assert all(isinstance(v, str) for v in (*rule["labels"].values(), *rule["annotations"].values()))
            if group["name"] != "mig-exporter xid":  # the slice and fleet alerts link their panel; XID alerts none
                assert (rule["dashboardUid"], rule["panelId"]) in panels
    xids = [f"MigGpuXidError {x}" for x in (48, 63, 64, 74, 79, 94, 95)]
    assert titles == [
        "MigInstanceIdle", "MigInstanceUnderutilized", "MigNodeIdleCapacity", "MigNamespaceIdleSlices", *xids
    ]  # fmt: skip
    assert len({r["uid"] for g in doc["groups"] for r in g["rules"]}) == len(titles)


def test_dashboard_provider_points_grafana_at_the_json_files() -> None:
    """The dashboards provider is a file provider in Grafana's provisioning format with a path and a folder."""
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "mig-exporter.yaml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] and provider["folder"] == "MIG"
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert datasources["apiVersion"] == 1 and datasources["datasources"][0]["type"] == "prometheus"
