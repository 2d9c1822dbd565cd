"""The shipped Prometheus rules: valid for promtool, and their unit tests (each alert firing and not) pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from exporter.contract import recorded

RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = RULES_DIR / "mig-exporter.rules.yml"
RULE_TESTS = RULES_DIR / "mig-exporter.rules.test.yml"
ALERTS = {
    "MigInstanceIdle",
    "MigInstanceUnderutilized",
    "MigNodeIdleCapacity",
    "MigNamespaceIdleSlices",
    "MigInstanceMemoryNearlyFull",
    "MigExporterDown",
    "MigExporterStale",
    "MigGpuXidError",
}


def rules() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_rules_file_passes_promtool_check(promtool: str) -> None:
    """`promtool check rules` accepts the rules file."""
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    """`promtool test rules` passes: every alert fires where it should and stays silent where it should not."""
    result = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_shown_firing_and_not_firing() -> None:
    """Each shipped alert has a unit test that expects it firing and one that expects no alert."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert {r["alert"] for r in rules() if "alert" in r} == ALERTS
    assert firing == ALERTS
    assert silent == ALERTS


def test_alerts_name_node_gpu_gi_and_profile_and_link_a_runbook() -> None:
    """Instance alerts name node, GPU, GI and profile in summary and description; every alert links its runbook."""
    readme = (RULES_DIR.parent.parent / "README.md").read_text().lower()
    for rule in rules():
        if "alert" not in rule:
            continue
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["summary"] and annotations["description"]
        if str(rule["alert"]).startswith("MigInstance"):
            for label in ("instance", "gpu", "gi", "profile"):
                assert f"$labels.{label}" in annotations["summary"], (rule["alert"], label)
                assert f"$labels.{label}" in annotations["description"], (rule["alert"], label)
        anchor = str(annotations["runbook"]).split("#", 1)[1]
        assert f"#### {str(rule['alert']).lower()}" in readme, f"README has no runbook for {rule['alert']}"
        assert anchor == str(rule["alert"]).lower()


def test_recorded_series_are_the_contracts_names() -> None:
    """Every series the rules record is named in exporter.contract.recorded, and every name there is recorded."""
    names = {
        value
        for key, value in vars(recorded).items()
        if key.isupper() and isinstance(value, str) and value.count(":") == 2
    }
    assert {str(r["record"]) for r in rules() if "record" in r} == names
    assert set(recorded.ROLLUPS_5M) | set(recorded.ROLLUPS_1H) | set(recorded.FLEET_5M) <= names
