"""Building blocks shared by the dashboards: data source, template variables, queries, panels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from grafanalib import core as g

from dashboards.thresholds import Thresholds
from exporter.contract import families as fam
from exporter.contract import recorded
from exporter.model import Field

P = TypeVar("P", bound=g.Panel)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ACTIVITY = fam.INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE].series
GPU_ACTIVITY_RULE = recorded.GPU_ACTIVITY_SLICE_WEIGHTED
HOURLY_ACTIVITY_RULE = recorded.INSTANCE_ACTIVITY_AVG1H
INSTANCE_KEY = "instance, gpu, gi, profile"
INSTANCE_LEGEND = "{{instance}} · GPU {{gpu}} · GI {{gi}} · {{profile}}"
TOP_CHOICES = (10, 20, 50, 100)  # rows of the fleet's top-N tables; the variable $top picks one
TOP_DEFAULT = 20
ROLLUP_STEP = "5m"  # min interval of graphs of 5m-recorded series: finer steps only repeat samples
NODE_URL = "/d/mig-node/mig-node?${__url_time_range}&var-datasource=${datasource}&var-instance=${__data.fields.node}"
INSTANCE_URL = (
    "/d/mig-instance/mig-instance?${__url_time_range}&var-datasource=${datasource}"
    "&var-instance=${__data.fields.node}&var-gpu=${__data.fields.gpu}&var-gi=${__data.fields.gi}"
)


def datasource_variable() -> g.Template:
    """The Prometheus data source to read, chosen on the dashboard."""
    return g.Template(
        name="datasource",
        label="Data source",
        query="prometheus",
        type="datasource",
    )


def query_variable(name: str, label: str, query: str, *, multi: bool = True) -> g.Template:
    """A variable listing label values; multi-valued ones default to All (matching any value)."""
    return g.Template(
        name=name,
        label=label,
        query=query,
        dataSource=DATASOURCE,
        includeAll=multi,
        multi=multi,
        allValue=".*" if multi else None,
        refresh=2,  # on time-range change, so new nodes and re-partitions show up
        default="$__all" if multi else None,
    )


def top_variable() -> g.Template:
    """How many rows the top-N tables show: their size never follows the fleet's."""
    return g.Template(
        name="top",
        label="Top N",
        query=",".join(map(str, TOP_CHOICES)),
        type="custom",
        default=str(TOP_DEFAULT),
    )


def only(expr: str, of: str, key: str = INSTANCE_KEY) -> str:
    """`expr` for the series `of` selects (joined on `key`): a table column for a top-N table's rows."""
    return f"{expr} and on ({key}) ({of})"


def link(field: str, title: str, url: str) -> dict[str, Any]:
    """A table override: the cells of `field` link to `url` (a drill-down)."""
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": "links", "value": [{"title": title, "url": url}]}],
    }


def merged_table(
    title: str,
    targets: list[g.Target],
    grid: g.GridPos,
    columns: dict[str, str],
    *,
    sort: str,
    overrides: list[dict[str, Any]],
    description: str,
    hidden: Sequence[str] = (),
) -> g.Table:
    """A table of instant queries merged into rows by their labels; `columns` (field -> header) in order."""
    return table(
        title,
        targets,
        grid,
        description=description,
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {name: True for name in ("Time", "job", "__name__", *hidden)},
                    "indexByName": {name: i for i, name in enumerate(columns)},
                    "renameByName": {k: v for k, v in columns.items() if k != v},
                },
            },
        ],
        sortBy=[g.TableSortByField(displayName=sort, desc=True)],
        overrides=overrides,
    )


def target(
    expr: str, ref: str, legend: str = "", *, instant: bool = False, table: bool = False, interval: str = ""
) -> g.Target:
    """A Prometheus query of a panel; `interval` is its minimum step."""
    return g.Target(
        interval=interval,
        expr=expr,
        refId=ref,
        legendFormat=legend,
        instant=instant,
        format="table" if table else "time_series",
        datasource=DATASOURCE,
        intervalFactor=1,
    )


def activity_steps(th: Thresholds) -> list[dict[str, Any]]:
    """Threshold colours for an activity ratio: red when idle, orange when under-used, green above."""
    return [
        {"color": "red", "value": None},
        {"color": "orange", "value": th.idle},
        {"color": "green", "value": th.underused},
    ]


def warn_from(value: float, color: str = "red") -> list[dict[str, Any]]:
    """Threshold colours for a count or amount that should be zero: green, then `color` from `value` on."""
    return [{"color": "green", "value": None}, {"color": color, "value": value}]


def pos(x: int, y: int, w: int, h: int) -> g.GridPos:
    return g.GridPos(h=h, w=w, x=x, y=y)


def panel(kind: Callable[..., P], title: str, targets: Sequence[g.Target], grid: g.GridPos, **options: Any) -> P:
    """Every panel of the dashboards: a title, its queries on the dashboard's data source, its place on the grid."""
    return kind(title=title, dataSource=DATASOURCE, targets=list(targets), gridPos=grid, **options)


def stat(
    title: str, expr: str, grid: g.GridPos, *, unit: str = "none", description: str = "", legend: str = "", **extra: Any
) -> g.Stat:
    """A single-number panel from an instant query."""
    return panel(
        g.Stat,
        title,
        [target(expr, "A", legend, instant=True)],
        grid,
        description=description,
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="none",
        thresholds=extra.pop("steps", [{"color": "blue", "value": None}]),
        **extra,
    )


def timeseries(title: str, targets: list[g.Target], grid: g.GridPos, *, unit: str, **extra: Any) -> g.TimeSeries:
    """A graph over time."""
    return panel(
        g.TimeSeries,
        title,
        targets,
        grid,
        unit=unit,
        legendDisplayMode="table",
        legendPlacement="right",
        legendCalcs=["mean", "lastNotNull"],
        tooltipMode="multi",
        **extra,
    )


def table(title: str, targets: list[g.Target], grid: g.GridPos, **extra: Any) -> g.Table:
    """A table of instant queries."""
    return panel(g.Table, title, targets, grid, **extra)


def ratio_timeseries(title: str, targets: list[g.Target], grid: g.GridPos, description: str = "") -> g.TimeSeries:
    """A graph of activity ratios, on a fixed 0-100% axis."""
    return timeseries(title, targets, grid, unit="percentunit", valueMin=0, valueMax=1, description=description)


def dashboard(
    *, title: str, uid: str, description: str, since: str, variables: list[g.Template], panels: list[g.Panel]
) -> g.Dashboard:
    """A mig-exporter dashboard: tagged and cross-linked with the others, data source chosen first."""
    return g.Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["mig-exporter", "gpu", "mig"],
        timezone="browser",
        refresh="1m",
        schemaVersion=39,
        time=g.Time(since, "now"),
        graphTooltip=1,
        links=[g.DashboardLink(title="MIG dashboards", tags=["mig-exporter"], asDropdown=True, includeVars=False)],
        templating=g.Templating([datasource_variable(), *variables]),
        panels=panels,
    ).auto_panel_ids()
