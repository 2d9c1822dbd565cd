"""The landing page: the node's MIG layout as a grid of GPU cards with live activity, memory and pods.

`/` serves the page (templates/page.html); its small inline script re-fetches `/layout.html`
(templates/layout.html, the live part) every sampling interval, so it stays live without a reload.
`/api/layout` gives the same view as JSON. The templates autoescape; the slice maps are SVG drawn
by exporter.mig.svg and marked safe where they are put in.

Jinja2 is imported when the page is first asked for: Prometheus only scrapes /metrics, and the
template engine is about 9 MB of a daemon that otherwise stays under 45 MB.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

from aiohttp import web
from markupsafe import Markup

from exporter.http.layout import IDLE_WINDOW_S, ActivityWindow, GpuView, InstanceView, LayoutView, layout
from exporter.kubernetes.attribution import AttributionProvider
from exporter.mig.catalog import board
from exporter.mig.svg import ComputeBox, SliceBox, activity_legend_svg, slice_map_svg, whole_gpu_svg
from exporter.sampler import Sampler
from exporter.timespec import format_duration
from exporter.units import gib, percent

if TYPE_CHECKING:
    import jinja2


@functools.cache
def _templates() -> jinja2.Environment:
    import jinja2  # on the first page view, not at start-up (see the module's docstring)

    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("exporter.http", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(percent=percent, gib=gib, duration=format_duration, clock=_clock)
    templates.globals.update(gpu_drawing=gpu_drawing, legend=_legend)
    return templates


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


def _legend(view: LayoutView) -> Markup:
    window = format_duration(view.idle_window_seconds)
    return Markup(activity_legend_svg(f"mean activity under {percent(view.idle_threshold)} over {window}"))


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def layout_fragment(view: LayoutView) -> str:
    """The live part of the page (summary, legend, GPU cards), re-fetched by the page's script."""
    return _templates().get_template("layout.html").render(view=view)


def landing_page(view: LayoutView, refresh_s: float) -> str:
    """The whole page: header, the current layout, and the script that keeps it live."""
    refresh_ms = int(min(max(refresh_s, 1.0), 10.0) * 1000)
    return _templates().get_template("page.html").render(view=view, refresh_ms=refresh_ms)


class Landing:
    """What the landing handlers read: the sampler, the activity window it feeds, the pod attribution."""

    def __init__(self, sampler: Sampler, attribution: AttributionProvider | None = None) -> None:
        self.sampler = sampler
        self.attribution = attribution
        self.window = ActivityWindow()
        sampler.subscribers.append(self.window.update)

    def view(self) -> LayoutView:
        return layout(self.sampler.snapshot, self.window, self.sampler.source.name, self.attribution)


LANDING = web.AppKey("landing", Landing)


async def index(request: web.Request) -> web.Response:
    landing = request.app[LANDING]
    return web.Response(text=landing_page(landing.view(), landing.sampler.interval), content_type="text/html")


async def fragment(request: web.Request) -> web.Response:
    text = layout_fragment(request.app[LANDING].view())
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


async def api_layout(request: web.Request) -> web.Response:
    return web.json_response(request.app[LANDING].view().as_json(), headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, sampler: Sampler, attribution: AttributionProvider | None = None) -> None:
    """Serve the landing page, its live fragment and /api/layout from `app`."""
    app[LANDING] = Landing(sampler, attribution)
    app.router.add_get("/", index)
    app.router.add_get("/layout.html", fragment)
    app.router.add_get("/api/layout", api_layout)
