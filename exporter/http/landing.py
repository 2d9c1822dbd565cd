"""The landing page: the node's MIG layout as a grid of GPU cards with live activity, memory and pods.

`/` serves the page (templates/page.html); its small inline script re-fetches `/layout.html`
(templates/layout.html, the live part) every sampling interval, so it stays live without a reload.
`/api/layout` gives the same view as JSON. The templates autoescape; the slice maps are SVG drawn
by exporter.mig.svg and marked safe where they are put in.

Jinja2 and the drawings (drawings.py: markupsafe, ElementTree) are imported when the page is first
asked for: Prometheus only scrapes /metrics, and they are about 10 MB of a daemon that otherwise
stays under 45 MB.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

from aiohttp import web

from exporter.http.layout import ActivityWindow, LayoutView, layout
from exporter.kubernetes.attribution import AttributionProvider
from exporter.sampler import Sampler
from exporter.timespec import format_duration
from exporter.units import gib, percent

if TYPE_CHECKING:
    import jinja2


@functools.cache
def _templates() -> jinja2.Environment:
    import jinja2  # on the first page view, not at start-up (see the module's docstring)

    from exporter.http.drawings import gpu_drawing, legend

    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("exporter.http", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(percent=percent, gib=gib, duration=format_duration, clock=_clock)
    templates.globals.update(gpu_drawing=gpu_drawing, legend=legend)
    return templates


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
