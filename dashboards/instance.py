"""The "MIG instance" dashboard: one GPU instance's activity, memory, compute instances and pods."""

from __future__ import annotations

from grafanalib import core as g

from dashboards.common import (
    GPU_ACTIVITY_RULE,
    activity_steps,
    dashboard,
    pos,
    query_variable,
    ratio_timeseries,
    stat,
    table,
    target,
    timeseries,
)
from dashboards.thresholds import DEFAULT_THRESHOLDS, Thresholds
from exporter.contract import families as fam
from exporter.contract import recorded
from exporter.model import Field

UID = "mig-instance"
SEL = 'instance="$instance", gpu="$gpu", gi="$gi"'
RATIOS = (
    (Field.GR_ENGINE_ACTIVE, "graphics engine active"),
    (Field.SM_ACTIVE, "SM active"),
    (Field.SM_OCCUPANCY, "SM occupancy"),
    (Field.TENSOR_ACTIVE, "tensor active"),
    (Field.DRAM_ACTIVE, "DRAM active"),
)


def _info_table(title: str, expr: str, grid: g.GridPos, columns: dict[str, str]) -> g.Table:
    """A table of an `_info` series' labels, keeping `columns` (label -> header) in order."""
    return table(
        title,
        [target(expr, "A", instant=True, table=True)],
        grid,
        transformations=[
            {"id": "filterFieldsByName", "options": {"include": {"names": list(columns)}}},
            {
                "id": "organize",
                "options": {
                    "indexByName": {name: i for i, name in enumerate(columns)},
                    "renameByName": columns,
                },
            },
        ],
    )


def instance_dashboard(th: Thresholds = DEFAULT_THRESHOLDS) -> g.Dashboard:
    """One GPU instance in detail."""
    return dashboard(
        title="MIG instance",
        uid=UID,
        description="One MIG GPU instance: activity, memory, compute instances and pods (mig-exporter).",
        since="now-6h",
        variables=[
            query_variable("instance", "Node", f"label_values({fam.INSTANCE_INFO}, instance)", multi=False),
            query_variable(
                "gpu", "GPU", f'label_values({fam.INSTANCE_INFO}{{instance="$instance"}}, gpu)', multi=False
            ),
            query_variable(
                "gi",
                "GPU instance",
                f'label_values({fam.INSTANCE_INFO}{{instance="$instance", gpu="$gpu"}}, gi)',
                multi=False,
            ),
        ],
        panels=[
            stat(
                "Profile",
                f"{fam.INSTANCE_INFO}{{{SEL}}}",
                pos(0, 0, 6, 4),
                legend="{{profile}}",
                textMode="name",
            ),
            stat(
                "Placement (memory slices)",
                f"{fam.INSTANCE_INFO}{{{SEL}}}",
                pos(6, 0, 4, 4),
                legend="start {{placement_start}}, size {{placement_size}}",
                textMode="name",
            ),
            stat(
                "Mean activity (range)",
                f"avg_over_time({recorded.INSTANCE_ACTIVITY_ROLLUP_AVG1H}{{{SEL}}}[$__range])",
                pos(10, 0, 5, 4),
                unit="percentunit",
                decimals=1,
                steps=activity_steps(th),
                description=f"Idle below {th.idle:.0%}, under-used below {th.underused:.0%}; from the hourly rollups.",
            ),
            stat("Memory used", f"{fam.INSTANCE_MEMORY_USED}{{{SEL}}}", pos(15, 0, 5, 4), unit="bytes"),
            stat("Memory total", f"{fam.INSTANCE_MEMORY_TOTAL}{{{SEL}}}", pos(20, 0, 4, 4), unit="bytes"),
            ratio_timeseries(
                "Activity ratios",
                [
                    target(f"{fam.INSTANCE_ACTIVITY[field]}{{{SEL}}}", chr(65 + i), label)
                    for i, (field, label) in enumerate(RATIOS)
                ],
                pos(0, 4, 12, 9),
                description="Relative to the GPU instance; a ratio the source cannot read is absent.",
            ),
            timeseries(
                "Memory used vs total",
                [
                    target(f"{fam.INSTANCE_MEMORY_USED}{{{SEL}}}", "A", "used"),
                    target(f"{fam.INSTANCE_MEMORY_TOTAL}{{{SEL}}}", "B", "total"),
                ],
                pos(12, 4, 12, 9),
                unit="bytes",
                valueMin=0,
            ),
            ratio_timeseries(
                "Compute instances",
                [target(f"{fam.COMPUTE_INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE]}{{{SEL}}}", "A", "CI {{ci}}")],
                pos(0, 13, 12, 8),
                description="Graphics-engine activity of each compute instance (MIG device), relative to itself.",
            ),
            ratio_timeseries(
                "Whole GPU (slice-weighted)",
                [target(f'{GPU_ACTIVITY_RULE}{{instance="$instance", gpu="$gpu"}}', "A", "GPU {{gpu}}")],
                pos(12, 13, 12, 8),
            ),
            _info_table(
                "Compute instances (MIG devices)",
                f"{fam.COMPUTE_INSTANCE_INFO}{{{SEL}}}",
                pos(0, 21, 12, 6),
                {"ci": "CI", "ci_profile": "CI profile", "mig_uuid": "MIG device UUID"},
            ),
            _info_table(
                "Pods",
                f"{fam.INSTANCE_POD_INFO}{{{SEL}}}",
                pos(12, 21, 12, 6),
                {"ci": "CI", "namespace": "namespace", "pod": "pod", "container": "container"},
            ),
            timeseries(
                "Power: this GPU instance's estimated share",
                [
                    target(f"{recorded.INSTANCE_POWER_ESTIMATE}{{{SEL}}}", "A", "GPU instance (estimate)"),
                    target(f'{fam.GPU_POWER}{{instance="$instance", gpu="$gpu"}}', "B", "whole GPU (measured)"),
                    target(f'{recorded.GPU_IDLE_POWER}{{instance="$instance", gpu="$gpu"}}', "C", "GPU idle floor"),
                ],
                pos(0, 27, 24, 8),
                unit="watt",
                valueMin=0,
                description=(
                    "An estimate: the driver reads power per GPU only. The GPU's idle power (its lowest draw in the "
                    "last day) is shared by compute slices held, the power above it by slice-weighted activity. "
                    "Integrated over time it is the instance's energy, as in mig-exporter report."
                ),
            ),
        ],
    )
