"""The review as one self-contained HTML page: no scripts, no external files, charts as inline SVG."""

from __future__ import annotations

from html import escape

import yaml

from exporter.report.charts import heatmap_svg, recommended_maps, today_maps, waste_svg
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

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #102a43; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ccd; }
h3 { font-size: 15px; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ccd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
tr.reclaim td { background: #fdecea; } tr.resize td { background: #fff4e5; }
tr.time-share td { background: #eef4fb; }
.chart { overflow-x: auto; margin: 8px 0 16px; }
.maps { display: flex; gap: 24px; flex-wrap: wrap; }
.maps > div { flex: 1 1 480px; }
.maps svg { max-width: 100%; height: auto; display: block; margin-bottom: 6px; }
pre { background: #f6f8fa; padding: 8px; font-size: 12px; overflow-x: auto; }
.note { color: #486581; font-size: 13px; }
"""


def _table(table: Table, row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    rows = []
    for i, row in enumerate(table.rows):
        cls = f' class="{row_classes[i]}"' if row_classes else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(review: Review) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>MIG capacity review</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>MIG capacity review</h1>",
        f'<p class="note">{escape(window_line(review))}</p>',
        f'<p class="note">{escape(source_line(review))}</p>',
        "<h2>Summary</h2>",
        _table(summary_table(review)),
        f"<p>{escape(action_counts(review))}</p>",
        f"<p>{escape(energy_line(review))}</p>",
        "<h2>Activity over the window</h2>",
        '<p class="note">Mean graphics-engine activity per GPU instance; labels in red are idle (reclaim), '
        "in orange oversized (resize), in blue used periodically (time-share).</p>",
        f'<div class="chart" id="heatmap">{heatmap_svg(review.instances, review.grid)}</div>',
        "<h2>Waste by profile</h2>",
        f'<div class="chart" id="waste">{waste_svg(review)}</div>',
        "<h2>Instances</h2>",
        _table(instance_table(review), [i.recommendation.action for i in review.instances]),
        "<h2>Today and recommended layouts</h2>",
    ]
    for plan in review.nodes:
        parts.append(f"<h3>{escape(node_heading(plan))}</h3>")
        recommended = recommended_maps(plan) or ['<p class="note">No MIG instance is needed any more.</p>']
        parts.append(
            '<div class="maps"><div><h4>Today</h4>'
            + "".join(today_maps(plan))
            + "</div><div><h4>Recommended</h4>"
            + "".join(recommended)
            + "</div></div>"
        )
        if plan.recommended:
            parts.append(_table(layout_table(plan)))
        if plan.mig_parted is not None:
            config = yaml.safe_dump(plan.mig_parted, sort_keys=False)
            parts.append(
                f"<p>nvidia-mig-parted config <code>{escape(plan.config_name)}</code> (every layout validated "
                f"against the MIG placement rules):</p><pre>{escape(config)}</pre>"
            )
    if found := notes(review):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in found) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
