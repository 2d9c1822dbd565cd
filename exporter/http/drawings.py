"""The landing page's drawings: each GPU's slice map (exporter.mig.svg) from its view, and the legend.

Imported with the page's templates on the first page view (landing.py), not at start-up.
"""

from __future__ import annotations

from markupsafe import Markup

from exporter.http.layout import IDLE_WINDOW_S, GpuView, InstanceView, LayoutView
from exporter.mig.catalog import board
from exporter.mig.svg import ComputeBox, SliceBox, activity_legend_svg, slice_map_svg, whole_gpu_svg
from exporter.timespec import format_duration
from exporter.units import gib, percent


def _box(inst: InstanceView) -> SliceBox:
    assert inst.placement_start is not None  # gpu_drawing draws a map only where every instance is placed
    pods = ", ".join(f"{p} ({p.container})" for p in inst.pods)
    return SliceBox(
        inst.placement_start,
        inst.memory_slices,
        inst.compute_slices,
        inst.profile,
        inst.activity,
        inst.idle,
        detail=f"{gib(inst.memory_used_bytes, unit=False)}/{gib(inst.memory_total_bytes, unit=False)} GiB",
        compute_instances=tuple(
            ComputeBox(f"CI {c.ci}", c.compute_slices, c.activity, ", ".join(map(str, c.pods)))
            for c in inst.compute_instances
        ),
        tooltip=f"GI {inst.gi}, {format_duration(IDLE_WINDOW_S)} mean {percent(inst.activity_5m)}"
        + (f"\nheld by {pods}" if pods else ""),
    )


def gpu_drawing(gpu: GpuView) -> Markup:
    """The GPU's slice map (or its whole-GPU box when MIG is disabled), or a line saying why there is none."""
    if not gpu.mig_enabled:
        memory = f"{gib(gpu.memory_used_bytes, unit=False)}/{gib(gpu.memory_total_bytes)}"
        return Markup(whole_gpu_svg("MIG disabled: the GPU is one device", "whole GPU", gpu.activity, memory))
    if not gpu.placed:
        return Markup("<p class='note'>No slice map: this source does not report placements.</p>")
    try:
        svg = slice_map_svg(
            board(gpu.board or ""),
            [_box(i) for i in gpu.instances],
            title=f"{gpu.compute_in_use} of 7 compute and {gpu.memory_in_use} of 8 memory slices in use",
            key=f"-gpu{gpu.gpu}",
        )
    except ValueError as exc:  # a board the catalog lacks (UnknownBoardError), or a placement off its map
        return Markup("<p class='note'>No slice map: {}</p>").format(exc)
    return Markup(svg)


def legend(view: LayoutView) -> Markup:
    window = format_duration(view.idle_window_seconds)
    return Markup(activity_legend_svg(f"mean activity under {percent(view.idle_threshold)} over {window}"))
