"""The "MIG fleet" dashboard: where the idle and under-used slices are, across every node."""

from __future__ import annotations

from grafanalib import core as g

from dashboards.common import (
    ACTIVITY,
    GPU_ACTIVITY_RULE,
    HOURLY_ACTIVITY_RULE,
    INSTANCE_KEY,
    INSTANCE_LEGEND,
    activity_steps,
    dashboard,
    panel,
    pos,
    query_variable,
    ratio_timeseries,
    stat,
    table,
    target,
    warn_from,
)
from dashboards.thresholds import DEFAULT_THRESHOLDS, Thresholds
from exporter.contract import families as fam

UID = "mig-fleet"
SEL = 'instance=~"$instance", gpu=~"$gpu", profile=~"$profile"'
GPU_SEL = 'instance=~"$instance", gpu=~"$gpu"'


def range_mean() -> str:
    """Each GPU instance's mean activity over the dashboard's time range."""
    return f"avg_over_time({ACTIVITY}{{{SEL}}}[$__range])"


def idle_expr(th: Thresholds) -> str:
    return f"{range_mean()} < {th.idle}"


def below_underused_expr(th: Thresholds) -> str:
    """Idle and under-used instances alike: mean activity below the under-used threshold."""
    return f"{range_mean()} < {th.underused}"


def _only(expr: str, of: str) -> str:
    return f"{expr} and on ({INSTANCE_KEY}) ({of})"


def _stats(th: Thresholds) -> list[g.Panel]:
    idle = idle_expr(th)
    underused = f"{below_underused_expr(th)} >= {th.idle}"
    pct = f"{th.idle:.0%}"
    return [
        stat("GPU instances", f"count({fam.INSTANCE_INFO}{{{SEL}}}) or vector(0)", pos(0, 0, 4, 4)),
        stat(
            "Idle instances",
            f"count({idle}) or vector(0)",
            pos(4, 0, 4, 4),
            description=f"GPU instances whose mean activity over the time range is below {pct}.",
            steps=warn_from(1),
        ),
        stat(
            "Idle capacity",
            f"(sum({_only(f'{fam.INSTANCE_COMPUTE_SLICES}{{{SEL}}}', idle)}) / 7) or vector(0)",
            pos(8, 0, 4, 4),
            description="Compute slices of the idle instances, in whole GPUs (7 compute slices = 1 GPU).",
            decimals=2,
            unit="none",
            steps=warn_from(0.01),
            extraJson={"fieldConfig": {"defaults": {"unit": "suffix: GPU"}}},
        ),
        stat(
            "Idle memory",
            f"sum({_only(f'{fam.INSTANCE_MEMORY_TOTAL}{{{SEL}}}', idle)}) or vector(0)",
            pos(12, 0, 4, 4),
            description="Memory of the idle instances: held by slices that do no work.",
            unit="bytes",
            steps=warn_from(1),
        ),
        stat(
            "Under-used instances",
            f"count({underused}) or vector(0)",
            pos(16, 0, 4, 4),
            description=f"GPU instances averaging between {pct} and {th.underused:.0%} activity over the time range.",
            steps=warn_from(1, "orange"),
        ),
        stat(
            "Fleet activity",
            f"avg({GPU_ACTIVITY_RULE}{{{GPU_SEL}}})",
            pos(20, 0, 4, 4),
            description="Mean slice-weighted activity of the selected GPUs, now.",
            unit="percentunit",
            decimals=1,
            steps=activity_steps(th),
        ),
    ]


def _table(th: Thresholds) -> g.Table:
    wasted = below_underused_expr(th)
    pods = (
        f"group by ({INSTANCE_KEY}, namespace, pod) ({fam.INSTANCE_POD_INFO}{{{GPU_SEL}}}"
        f" * on (instance, gpu, gi) group_left (profile) group by ({INSTANCE_KEY}) ({fam.INSTANCE_INFO}{{{SEL}}}))"
    )
    link = (
        "/d/mig-instance/mig-instance?${__url_time_range}&var-datasource=${datasource}"
        "&var-instance=${__data.fields.instance}&var-gpu=${__data.fields.gpu}&var-gi=${__data.fields.gi}"
    )
    return table(
        "Idle and under-used instances",
        [
            target(wasted, "A", instant=True, table=True),
            target(_only(f"{HOURLY_ACTIVITY_RULE}{{{SEL}}}", wasted), "B", instant=True, table=True),
            target(_only(f"{fam.INSTANCE_MEMORY_USED}{{{SEL}}}", wasted), "C", instant=True, table=True),
            target(_only(f"{fam.INSTANCE_MEMORY_TOTAL}{{{SEL}}}", wasted), "D", instant=True, table=True),
            target(_only(pods, wasted), "E", instant=True, table=True),
        ],
        pos(0, 4, 24, 9),
        description=(
            f"GPU instances whose mean activity over the time range is below {th.underused:.0%}; "
            f"red ones are idle (below {th.idle:.0%}). Click a row's GI to open the instance."
        ),
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "job": True, "__name__": True, "Value #E": True},
                    "indexByName": {
                        "instance": 0,
                        "gpu": 1,
                        "gi": 2,
                        "profile": 3,
                        "Value #A": 4,
                        "Value #B": 5,
                        "Value #C": 6,
                        "Value #D": 7,
                        "namespace": 8,
                        "pod": 9,
                    },
                    "renameByName": {
                        "instance": "node",
                        "Value #A": "mean activity (range)",
                        "Value #B": "mean activity (last hour)",
                        "Value #C": "memory used",
                        "Value #D": "memory total",
                    },
                },
            },
        ],
        sortBy=[g.TableSortByField(displayName="mean activity (range)")],
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": "mean activity.*"},
                "properties": [
                    {"id": "unit", "value": "percentunit"},
                    {"id": "decimals", "value": 1},
                    {"id": "custom.displayMode", "value": "color-background"},
                    {"id": "thresholds", "value": {"mode": "absolute", "steps": activity_steps(th)}},
                ],
            },
            {"matcher": {"id": "byRegexp", "options": "memory.*"}, "properties": [{"id": "unit", "value": "bytes"}]},
            {
                "matcher": {"id": "byName", "options": "gi"},
                "properties": [{"id": "links", "value": [{"title": "Open this instance", "url": link}]}],
            },
        ],
    )


def fleet_dashboard(th: Thresholds = DEFAULT_THRESHOLDS) -> g.Dashboard:
    """The fleet view: counts and capacity of idle slices, the list of them, and activity over time."""
    return dashboard(
        title="MIG fleet",
        uid=UID,
        description="Idle and under-used MIG slices across the fleet (mig-exporter).",
        since="now-24h",
        variables=[
            query_variable("instance", "Node", f"label_values({fam.INSTANCE_INFO}, instance)"),
            query_variable("gpu", "GPU", f'label_values({fam.INSTANCE_INFO}{{instance=~"$instance"}}, gpu)'),
            query_variable(
                "profile",
                "Profile",
                f'label_values({fam.INSTANCE_INFO}{{instance=~"$instance", gpu=~"$gpu"}}, profile)',
            ),
        ],
        panels=[
            *_stats(th),
            _table(th),
            panel(
                g.StateTimeline,
                "Activity of every GPU instance",
                [target(f"{ACTIVITY}{{{SEL}}}", "A", INSTANCE_LEGEND)],
                pos(0, 13, 24, 10),
                description=f"Red: idle (< {th.idle:.0%}); orange: under-used (< {th.underused:.0%}); green: busy.",
                thresholds=activity_steps(th),
                showValue="never",
                mergeValues=False,
                legendDisplayMode="hidden",
                extraJson={"fieldConfig": {"defaults": {"unit": "percentunit", "min": 0, "max": 1}}},
            ),
            ratio_timeseries(
                "Slice-weighted activity per GPU",
                [target(f"{GPU_ACTIVITY_RULE}{{{GPU_SEL}}}", "A", "{{instance}} · GPU {{gpu}}")],
                pos(0, 23, 12, 9),
                description="Whole-GPU activity: each instance's activity weighted by its compute slices, / 7.",
            ),
            ratio_timeseries(
                "Activity by profile",
                [target(f"avg by (profile) ({ACTIVITY}{{{SEL}}})", "A", "{{profile}}")],
                pos(12, 23, 12, 9),
                description="Mean activity of the GPU instances of each profile.",
            ),
        ],
    )
