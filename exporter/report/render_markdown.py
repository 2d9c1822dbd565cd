"""The review as Markdown, for a ticket."""

from __future__ import annotations

import yaml

from exporter.report.review import Review
from exporter.report.tables import (
    Table,
    action_counts,
    energy_line,
    instance_table,
    layout_table,
    node_heading,
    notes,
    source_line,
    summary_table,
    window_line,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(review: Review) -> str:
    out = ["# MIG capacity review", "", window_line(review), "", source_line(review), "", "## Summary", ""]
    out += [markdown_table(summary_table(review)), "", action_counts(review), "", energy_line(review), ""]
    out += ["## Instances", "", markdown_table(instance_table(review)), ""]
    out += ["## Recommended layouts", ""]
    for plan in review.nodes:
        out += [f"### {node_heading(plan)}", ""]
        if plan.recommended:
            out += [markdown_table(layout_table(plan)), ""]
        else:
            out += ["No MIG instance is needed on these GPUs any more.", ""]
        if plan.mig_parted is not None:
            out += [
                f"nvidia-mig-parted config `{plan.config_name}` (every layout above validated against the "
                "MIG placement rules):",
                "",
                "```yaml",
                yaml.safe_dump(plan.mig_parted, sort_keys=False).rstrip(),
                "```",
                "",
            ]
    if found := notes(review):
        out += ["## Notes", "", *(f"- {n}" for n in found), ""]
    return "\n".join(out)
