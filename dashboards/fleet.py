"""The "MIG fleet" dashboard: how much MIG capacity is idle across every node, who holds it, and the worst of it.

Every query reads recorded series (deploy/prometheus/mig-exporter.rules.yml): the 5m fleet aggregates for
totals and graphs, the hourly rollups for anything over the time range, and instant vectors bounded by the
top-N tables. No panel's series count grows with the fleet, and no query reads a raw range longer than an
hour: at 1,000 nodes a 30-day view stays inside Prometheus' default 50 M-sample limit.
"""

from __future__ import annotations

from grafanalib import core as g

from dashboards.common import (
    INSTANCE_KEY,
    INSTANCE_URL,
    NODE_URL,
    ROLLUP_STEP,
    activity_steps,
    dashboard,
    link,
    merged_table,
    only,
    pos,
    query_variable,
    ratio_timeseries,
    stat,
    target,
    timeseries,
    top_variable,
    warn_from,
)
from dashboards.thresholds import DEFAULT_THRESHOLDS, Thresholds
from exporter.contract import families as fam
from exporter.contract import recorded as rec

UID = "mig-fleet"
PROFILE = 'profile=~"$profile"'
GPUS = {"fieldConfig": {"defaults": {"unit": "suffix: GPU"}}}


def _sel(name: str, extra: str = "") -> str:
    return f"{name}{{{PROFILE}{', ' + extra if extra else ''}}}"


def range_mean() -> str:
    """Each GPU instance's mean activity over the dashboard's time range, from the hourly rollups."""
    return f"avg_over_time({_sel(rec.INSTANCE_ACTIVITY_ROLLUP_AVG1H)}[$__range])"


def worst_instances() -> str:
    """The top-N GPU instances by unused capacity over the range: (1 - mean activity) x compute slices / 7."""
    unused = f"(1 - {range_mean()}) * on ({INSTANCE_KEY}) group_left {fam.INSTANCE_COMPUTE_SLICES} / 7"
    return f"topk($top, {unused})"


def worst_nodes() -> str:
    """The top-N nodes by idle GPU-equivalents, averaged over the range."""
    return f"topk($top, avg_over_time({rec.NODE_IDLE_GPUS}[$__range]))"


def idle_gpus(allocation: str = "") -> str:
    """Idle GPU-equivalents now, fleet-wide (of the selected profiles; of one allocation when given)."""
    extra = f'{rec.ALLOCATION}="{allocation}"' if allocation else ""
    return f"sum({_sel(rec.PROFILE_IDLE_GPUS, extra)}) or vector(0)"


def fleet_activity() -> str:
    """Slice-weighted mean activity of the selected profiles' GPU instances."""
    return (
        f"sum({_sel(rec.PROFILE_ACTIVITY)} * on (profile) {rec.PROFILE_COMPUTE_SLICES})"
        f" / sum({_sel(rec.PROFILE_COMPUTE_SLICES)})"
    )


def _stats(th: Thresholds) -> list[g.Panel]:
    pct = f"{th.idle:.0%}"
    underused = f"{range_mean()} < {th.underused} >= {th.idle}"
    return [
        stat("GPU instances", f"count({_sel(fam.INSTANCE_INFO.series)}) or vector(0)", pos(0, 0, 3, 4)),
        stat(
            "Idle instances",
            f"sum({_sel(rec.PROFILE_IDLE_INSTANCES)}) or vector(0)",
            pos(3, 0, 3, 4),
            description=f"GPU instances whose last 5-minute mean activity is below {pct}.",
            steps=warn_from(1),
        ),
        stat(
            "Idle capacity",
            idle_gpus(),
            pos(6, 0, 3, 4),
            description="Compute slices of the idle instances, in whole GPUs (7 compute slices = 1 GPU).",
            decimals=2,
            steps=warn_from(0.01),
            extraJson=GPUS,
        ),
        stat(
            "Idle, held by pods",
            idle_gpus(rec.HELD),
            pos(9, 0, 3, 4),
            description="Idle capacity a pod holds (pod attribution on): a team's waste.",
            decimals=2,
            steps=warn_from(0.01),
            extraJson=GPUS,
        ),
        stat(
            "Idle, free",
            idle_gpus(rec.FREE),
            pos(12, 0, 3, 4),
            description="Idle capacity no pod holds on nodes that report pods: free to schedule, nobody's waste.",
            decimals=2,
            extraJson=GPUS,
        ),
        stat(
            "Idle memory",
            f"sum({_sel(rec.PROFILE_IDLE_MEMORY)}) or vector(0)",
            pos(15, 0, 3, 4),
            description="Memory of the idle instances.",
            unit="bytes",
            steps=warn_from(1),
        ),
        stat(
            "Under-used instances",
            f"count({underused}) or vector(0)",
            pos(18, 0, 3, 4),
            description=f"GPU instances averaging between {pct} and {th.underused:.0%} over the time range "
            "(hourly rollups).",
            steps=warn_from(1, "orange"),
        ),
        stat(
            "Fleet activity",
            fleet_activity(),
            pos(21, 0, 3, 4),
            description="Slice-weighted mean activity of the GPU instances, over the last 5 minutes.",
            unit="percentunit",
            decimals=1,
            steps=activity_steps(th),
        ),
    ]


def _graphs() -> list[g.Panel]:
    step = ROLLUP_STEP
    return [
        timeseries(
            "Idle capacity by allocation",
            [
                target(
                    f"sum by ({rec.ALLOCATION}) ({_sel(rec.PROFILE_IDLE_GPUS)})", "A", "{{allocation}}", interval=step
                )
            ],
            pos(0, 4, 12, 8),
            unit="suffix: GPU",
            valueMin=0,
            description=f"{rec.HELD}: a pod holds it (a team's idle slice); {rec.FREE}: no pod holds it on a node "
            f"that reports pods (free capacity); {rec.UNATTRIBUTED}: the node reports no pods.",
        ),
        timeseries(
            "Idle capacity by profile",
            [target(f"sum by (profile) ({_sel(rec.PROFILE_IDLE_GPUS)})", "A", "{{profile}}", interval=step)],
            pos(12, 4, 12, 8),
            unit="suffix: GPU",
            valueMin=0,
            description="Idle compute slices of each profile, in GPUs.",
        ),
        ratio_timeseries(
            "Activity by profile",
            [target(_sel(rec.PROFILE_ACTIVITY), "A", "{{profile}}", interval=step)],
            pos(0, 12, 12, 8),
            description="Mean activity of the GPU instances of each profile (5-minute means).",
        ),
        ratio_timeseries(
            "Fleet activity over time",
            [target(fleet_activity(), "A", "fleet", interval=step)],
            pos(12, 12, 12, 8),
            description="Slice-weighted mean activity of the selected profiles' GPU instances.",
        ),
    ]


def _worst_instances(th: Thresholds) -> g.Table:
    worst = worst_instances()
    # per allocation the instance held during the range; the largest share when it changed hands
    idle_share = f"max by ({INSTANCE_KEY}) (avg_over_time({_sel(rec.INSTANCE_IDLE_ROLLUP_AVG1H)}[$__range]))"
    holder = f"group by ({INSTANCE_KEY}, {rec.ALLOCATION}) ({_sel(rec.INSTANCE_IDLE)})"
    pods = (
        f"group by ({INSTANCE_KEY}, namespace, pod) ({fam.INSTANCE_POD_INFO}"
        f" * on (instance, gpu, gi) group_left (profile) group by ({INSTANCE_KEY}) ({_sel(fam.INSTANCE_INFO.series)}))"
    )
    columns = {
        "instance": "node",
        "gpu": "gpu",
        "gi": "gi",
        "profile": "profile",
        "Value #A": "unused GPUs (range)",
        "Value #B": "mean activity (range)",
        "Value #C": "idle share (range)",
        "Value #D": "memory used",
        rec.ALLOCATION: rec.ALLOCATION,
        "namespace": "namespace",
        "pod": "pod",
    }
    return merged_table(
        "Worst GPU instances",
        [
            target(worst, "A", instant=True, table=True),
            target(only(range_mean(), worst), "B", instant=True, table=True),
            target(only(idle_share, worst), "C", instant=True, table=True),
            target(only(_sel(fam.INSTANCE_MEMORY_USED.series), worst), "D", instant=True, table=True),
            target(only(holder, worst), "E", instant=True, table=True),
            target(only(pods, worst), "F", instant=True, table=True),
        ],
        pos(0, 20, 24, 10),
        columns,
        sort="unused GPUs (range)",
        hidden=("Value #E", "Value #F"),
        description=(
            "The $top GPU instances with the most unused capacity over the time range: (1 - mean activity) x "
            f"compute slices / 7, from the hourly rollups. Red: idle (< {th.idle:.0%}), orange: under-used "
            f"(< {th.underused:.0%}). {rec.ALLOCATION}: who holds it now. Click a node or a GI to drill down."
        ),
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
            {
                "matcher": {"id": "byName", "options": "idle share (range)"},
                "properties": [{"id": "unit", "value": "percentunit"}],
            },
            {
                "matcher": {"id": "byName", "options": "unused GPUs (range)"},
                "properties": [{"id": "decimals", "value": 2}],
            },
            {"matcher": {"id": "byName", "options": "memory used"}, "properties": [{"id": "unit", "value": "bytes"}]},
            link("node", "Open this node", NODE_URL),
            link("gi", "Open this instance", INSTANCE_URL),
        ],
    )


def _worst_nodes() -> g.Table:
    worst = worst_nodes()
    held = (
        f'sum by (instance) ({rec.INSTANCE_IDLE}{{{rec.ALLOCATION}="{rec.HELD}"}}'
        f" * on ({INSTANCE_KEY}) group_left {fam.INSTANCE_COMPUTE_SLICES}) / 7"
    )
    columns = {
        "instance": "node",
        "Value #A": "idle GPUs (range mean)",
        "Value #B": "idle GPUs (now)",
        "Value #C": "held by pods (now)",
        "Value #D": "idle instances (now)",
        "Value #E": "idle memory (now)",
    }
    return merged_table(
        "Nodes with the most idle capacity",
        [
            target(worst, "A", instant=True, table=True),
            target(only(rec.NODE_IDLE_GPUS, worst, "instance"), "B", instant=True, table=True),
            target(only(held, worst, "instance"), "C", instant=True, table=True),
            target(only(rec.NODE_IDLE_INSTANCES, worst, "instance"), "D", instant=True, table=True),
            target(only(rec.NODE_IDLE_MEMORY, worst, "instance"), "E", instant=True, table=True),
        ],
        pos(0, 30, 14, 9),
        columns,
        sort="idle GPUs (range mean)",
        description="The $top nodes holding the most idle GPU-equivalents over the time range (all profiles). "
        "Click a node to open it.",
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".*GPUs.*|held.*"},
                "properties": [{"id": "decimals", "value": 2}],
            },
            {
                "matcher": {"id": "byName", "options": "idle memory (now)"},
                "properties": [{"id": "unit", "value": "bytes"}],
            },
            link("node", "Open this node", NODE_URL),
        ],
    )


def _namespaces() -> g.Table:
    worst = f"topk($top, avg_over_time({rec.NAMESPACE_IDLE_GPUS}[$__range]) > 0)"
    return merged_table(
        "Namespaces holding idle slices",
        [
            target(worst, "A", instant=True, table=True),
            target(only(rec.NAMESPACE_IDLE_GPUS, worst, "namespace"), "B", instant=True, table=True),
        ],
        pos(14, 30, 10, 9),
        {"namespace": "namespace", "Value #A": "idle GPUs (range mean)", "Value #B": "idle GPUs (now)"},
        sort="idle GPUs (range mean)",
        description="The $top namespaces whose pods hold the most idle GPU-equivalents (needs pod attribution). "
        "Free slices (no pod) belong to no namespace.",
        overrides=[
            {"matcher": {"id": "byRegexp", "options": ".*GPUs.*"}, "properties": [{"id": "decimals", "value": 2}]}
        ],
    )


def fleet_dashboard(th: Thresholds = DEFAULT_THRESHOLDS) -> g.Dashboard:
    """The fleet view: idle capacity now and over time, who holds it, and the worst instances, nodes, teams."""
    return dashboard(
        title="MIG fleet",
        uid=UID,
        description="Idle and under-used MIG capacity across the fleet (mig-exporter); reads the shipped rules.",
        since="now-24h",
        variables=[
            query_variable("profile", "Profile", f"label_values({rec.PROFILE_COMPUTE_SLICES}, profile)"),
            top_variable(),
        ],
        panels=[*_stats(th), *_graphs(), _worst_instances(th), _worst_nodes(), _namespaces()],
    )
