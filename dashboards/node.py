"""The "MIG node" dashboard: one node's GPU instances, which are idle, who holds them, and its idle capacity.

The fleet dashboard's node links open it. Its series counts are bounded by one node's layout (at most 7 GPU
instances per GPU), and anything over the time range reads the hourly rollups.
"""

from __future__ import annotations

from grafanalib import core as g

from dashboards.common import (
    GPU_ACTIVITY_RULE,
    INSTANCE_KEY,
    INSTANCE_URL,
    ROLLUP_STEP,
    activity_steps,
    dashboard,
    link,
    merged_table,
    panel,
    pos,
    query_variable,
    ratio_timeseries,
    stat,
    target,
    timeseries,
    warn_from,
)
from dashboards.thresholds import DEFAULT_THRESHOLDS, Thresholds
from exporter.contract import families as fam
from exporter.contract import recorded as rec

UID = "mig-node"
SEL = 'instance="$instance"'
GPUS = {"fieldConfig": {"defaults": {"unit": "suffix: GPU"}}}


def held_gpus(allocation: str) -> str:
    """The node's idle GPU-equivalents of one allocation, per allocation when `allocation` is empty."""
    match = f', {rec.ALLOCATION}="{allocation}"' if allocation else ""
    return (
        f"sum by ({rec.ALLOCATION}) ({rec.INSTANCE_IDLE}{{{SEL}{match}}}"
        f" * on ({INSTANCE_KEY}) group_left {fam.INSTANCE_COMPUTE_SLICES}) / 7"
    )


def _instances(th: Thresholds) -> g.Table:
    mean = f"avg_over_time({rec.INSTANCE_ACTIVITY_ROLLUP_AVG1H}{{{SEL}}}[$__range])"
    idle_share = (
        f"sum by ({INSTANCE_KEY}) (sum_over_time({rec.INSTANCE_IDLE_ROLLUP_AVG1H}{{{SEL}}}[$__range]))"
        f" / sum by ({INSTANCE_KEY}) (count_over_time({rec.INSTANCE_IDLE_ROLLUP_AVG1H}{{{SEL}}}[$__range]))"
    )
    pods = (
        f"group by ({INSTANCE_KEY}, namespace, pod) ({fam.INSTANCE_POD_INFO}{{{SEL}}}"
        f" * on (instance, gpu, gi) group_left (profile) group by ({INSTANCE_KEY}) ({fam.INSTANCE_INFO}{{{SEL}}}))"
    )
    columns = {
        "instance": "node",
        "gpu": "gpu",
        "gi": "gi",
        "profile": "profile",
        "Value #A": "mean activity (range)",
        "Value #B": "peak activity (range)",
        "Value #C": "idle share (range)",
        "Value #G": "mean activity (last hour)",
        "Value #D": "memory used",
        rec.ALLOCATION: rec.ALLOCATION,
        "namespace": "namespace",
        "pod": "pod",
    }
    return merged_table(
        "GPU instances",
        [
            target(mean, "A", instant=True, table=True),
            target(
                f"max_over_time({rec.INSTANCE_ACTIVITY_ROLLUP_MAX1H}{{{SEL}}}[$__range])", "B", instant=True, table=True
            ),
            target(idle_share, "C", instant=True, table=True),
            target(f"{fam.INSTANCE_MEMORY_USED}{{{SEL}}}", "D", instant=True, table=True),
            target(
                f"group by ({INSTANCE_KEY}, {rec.ALLOCATION}) ({rec.INSTANCE_IDLE}{{{SEL}}})",
                "E",
                instant=True,
                table=True,
            ),
            target(pods, "F", instant=True, table=True),
            target(f"{rec.INSTANCE_ACTIVITY_AVG1H}{{{SEL}}}", "G", instant=True, table=True),
        ],
        pos(0, 22, 24, 9),
        columns,
        sort="idle share (range)",
        hidden=("Value #E", "Value #F"),
        description=(
            "Every GPU instance of the node over the time range (hourly rollups), who holds it now and its pods. "
            f"Red: idle (< {th.idle:.0%}), orange: under-used (< {th.underused:.0%}). Click a GI to open it."
        ),
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".*activity.*"},
                "properties": [
                    {"id": "unit", "value": "percentunit"},
                    {"id": "decimals", "value": 1},
                    {"id": "custom.displayMode", "value": "color-background"},
                    {"id": "thresholds", "value": {"mode": "absolute", "steps": activity_steps(th)}},
                ],
            },
            {
                "matcher": {"id": "byName", "options": "idle share (range)"},
                "properties": [{"id": "unit", "value": "percentunit"}],
            },
            {"matcher": {"id": "byName", "options": "memory used"}, "properties": [{"id": "unit", "value": "bytes"}]},
            link("gi", "Open this instance", INSTANCE_URL),
        ],
    )


def node_dashboard(th: Thresholds = DEFAULT_THRESHOLDS) -> g.Dashboard:
    """One node in detail."""
    return dashboard(
        title="MIG node",
        uid=UID,
        description="One node's MIG slices: which are idle, who holds them, its idle capacity (mig-exporter).",
        since="now-24h",
        variables=[query_variable("instance", "Node", f"label_values({fam.INSTANCE_INFO}, instance)", multi=False)],
        panels=[
            stat("GPU instances", f"count({fam.INSTANCE_INFO}{{{SEL}}}) or vector(0)", pos(0, 0, 4, 4)),
            stat(
                "Idle instances",
                f"{rec.NODE_IDLE_INSTANCES}{{{SEL}}}",
                pos(4, 0, 4, 4),
                description=f"GPU instances whose last 5-minute mean activity is below {th.idle:.0%}.",
                steps=warn_from(1),
            ),
            stat(
                "Idle capacity",
                f"{rec.NODE_IDLE_GPUS}{{{SEL}}}",
                pos(8, 0, 4, 4),
                description="Compute slices of the idle instances, in whole GPUs (7 compute slices = 1 GPU).",
                decimals=2,
                steps=warn_from(0.01),
                extraJson=GPUS,
            ),
            stat(
                "Idle, held by pods",
                f"{held_gpus(rec.HELD)} or vector(0)",
                pos(12, 0, 4, 4),
                description="Idle capacity a pod holds (pod attribution on).",
                decimals=2,
                steps=warn_from(0.01),
                extraJson=GPUS,
            ),
            stat("Idle memory", f"{rec.NODE_IDLE_MEMORY}{{{SEL}}}", pos(16, 0, 4, 4), unit="bytes", steps=warn_from(1)),
            stat(
                "Node activity",
                f"avg({GPU_ACTIVITY_RULE}{{{SEL}}})",
                pos(20, 0, 4, 4),
                description="Mean slice-weighted activity of the node's GPUs, now.",
                unit="percentunit",
                decimals=1,
                steps=activity_steps(th),
            ),
            panel(
                g.StateTimeline,
                "Activity of each GPU instance",
                [
                    target(
                        f"{rec.INSTANCE_ACTIVITY_AVG5M}{{{SEL}}}",
                        "A",
                        "GPU {{gpu}} · GI {{gi}} · {{profile}}",
                        interval=ROLLUP_STEP,
                    )
                ],
                pos(0, 4, 24, 10),
                description=f"5-minute means. Red: idle (< {th.idle:.0%}); orange: under-used (< {th.underused:.0%}); "
                "green: busy.",
                thresholds=activity_steps(th),
                showValue="never",
                mergeValues=False,
                legendDisplayMode="hidden",
                extraJson={"fieldConfig": {"defaults": {"unit": "percentunit", "min": 0, "max": 1}}},
            ),
            timeseries(
                "Idle capacity by allocation",
                [target(held_gpus(""), "A", "{{allocation}}", interval=ROLLUP_STEP)],
                pos(0, 14, 12, 8),
                unit="suffix: GPU",
                valueMin=0,
                description=f"{rec.HELD}: a pod holds it; {rec.FREE}: no pod holds it (free capacity); "
                f"{rec.UNATTRIBUTED}: the node reports no pods.",
            ),
            ratio_timeseries(
                "Slice-weighted activity per GPU",
                [target(f"{GPU_ACTIVITY_RULE}{{{SEL}}}", "A", "GPU {{gpu}}")],
                pos(12, 14, 12, 8),
                description="Whole-GPU activity: each instance's activity weighted by its compute slices, / 7.",
            ),
            _instances(th),
        ],
    )
