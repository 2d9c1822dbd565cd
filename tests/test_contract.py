"""The metric contract is defined once: README's table, the exposition and the generated rules all follow it."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dashboards.prometheus_rules import rules_file
from dashboards.thresholds import Thresholds
from exporter.contract import families as fam
from exporter.exposition.dcgm import builders_for
from exporter.exposition.render import Renderer
from tests.support.snapshots import fixed_snapshot

ROOT = Path(__file__).resolve().parent.parent


def contract_families() -> list[fam.Family]:
    found: list[fam.Family] = []
    for value in vars(fam).values():
        if isinstance(value, fam.Family):
            found.append(value)
        elif isinstance(value, dict):
            found += [v for v in value.values() if isinstance(v, fam.Family)]
    return found


def readme_table() -> dict[str, str]:
    """Metric name -> its labels cell, from README's metric table."""
    table = (ROOT / "README.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3:
            for name in re.findall(r"`(mig_[a-z_]+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def test_every_contract_family_is_documented_with_its_labels() -> None:
    """README's metric table lists each family of the contract with exactly its label names."""
    table = readme_table()
    for family in contract_families():
        if family.series.startswith("mig_compute_instance_") and family.series.endswith("_ratio"):
            family_row = table.get(family.series, table.get("mig_compute_instance_gr_engine_active_ratio"))
        else:
            family_row = table.get(family.series)
        assert family_row is not None, f"README's metric table lacks {family.series}"
        assert [label.strip() for label in family_row.split(",") if label.strip()] == list(family.labels), family


def test_the_exposition_serves_only_contract_families_with_their_labels() -> None:
    """Every native family rendered from a full dgx-h100 snapshot is in the contract, with the contract's labels."""
    by_name = {f.name: f for f in contract_families()}
    text = Renderer(builders_for("native")).render(fixed_snapshot("dgx-h100")).decode()
    served = list(text_string_to_metric_families(text))
    assert served
    for metric in served:
        family = by_name[metric.name]
        assert metric.type == family.kind and metric.documentation == family.help
        for sample in metric.samples:
            assert sorted(sample.labels) == sorted(family.labels), (metric.name, sample.labels)


def test_generated_rules_follow_the_thresholds_they_are_built_with() -> None:
    """Other thresholds change the generated Prometheus alert expressions (the checked-in file uses the contract's)."""
    text = rules_file(Thresholds(idle=0.1, underused=0.35, idle_for="2h"))
    assert "[5m]) < 0.1\n" in text and "< 0.35" in text and ">= 0.1" in text and "for: 2h" in text
    assert "< 0.05" not in text
