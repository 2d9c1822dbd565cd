"""The landing page: the node's MIG layout drawn as slice maps with live activity and memory.

`/` serves the page; its small inline script re-fetches `/layout.html` (the GPU sections, rendered
here with the planner's SVG slice map) every sampling interval, so it stays live without a reload.
`/api/layout` gives the same layout as JSON. A GPU instance is marked idle when its mean activity
over the last 5 minutes is below 5%: the condition of the MigInstanceIdle alert, without its hour.
"""

from __future__ import annotations

import html
import time
from collections import deque
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.contract.thresholds import IDLE_MEAN_WINDOW, IDLE_RATIO
from exporter.mig.catalog import board
from exporter.mig.svg import SliceBox, slice_map_svg
from exporter.model import Entity, Field, Gpu, GpuInstance, Snapshot
from exporter.sampler import Sampler
from exporter.timespec import parse_duration
from exporter.units import GIB

IDLE_WINDOW_S = float(parse_duration(IDLE_MEAN_WINDOW))  # the idle alert's mean window
_CHAR_PX = 7.5  # rough width of one label character in the slice map, to keep labels inside their box
_SLICE_PX = 72


class ActivityWindow:
    """Each GPU instance's activity over the last few minutes, so a pause between bursts is not called idle."""

    def __init__(self, seconds: float = IDLE_WINDOW_S) -> None:
        self.seconds = seconds
        self._values: dict[tuple[int, int], deque[tuple[float, float]]] = {}
        self._first: float | None = None
        self._last: float | None = None

    def update(self, snapshot: Snapshot) -> None:
        """Record a snapshot's GPU-instance activity; forget instances that no longer exist."""
        self._first = snapshot.timestamp if self._first is None else self._first
        self._last = snapshot.timestamp
        present = set()
        for gpu, inst in snapshot.topology.iter_instances():
            key = (gpu.index, inst.gi)
            present.add(key)
            sample = snapshot.samples.get(gpu.index)
            value = sample.get(Entity(gpu.index, inst.gi), Field.GR_ENGINE_ACTIVE) if sample else None
            if value is None:
                continue
            values = self._values.setdefault(key, deque())
            values.append((snapshot.timestamp, value))
            while values and values[0][0] < snapshot.timestamp - self.seconds:
                values.popleft()
        for key in self._values.keys() - present:
            del self._values[key]

    @property
    def covered(self) -> float:
        """Seconds of history the window holds: less than `seconds` shortly after start."""
        if self._first is None or self._last is None:
            return 0.0
        return min(self.seconds, self._last - self._first)

    def mean(self, gpu: int, gi: int) -> float | None:
        """Mean activity over the window, or None when nothing was read."""
        values = self._values.get((gpu, gi))
        return sum(v for _, v in values) / len(values) if values else None


class Landing:
    """What the landing handlers read: the sampler and the activity window it feeds."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.window = ActivityWindow()
        sampler.subscribers.append(self.window.update)


LANDING = web.AppKey("landing", Landing)


def _instance(gpu: Gpu, inst: GpuInstance, snapshot: Snapshot, window: ActivityWindow) -> dict[str, Any]:
    sample = snapshot.samples.get(gpu.index)
    entity = Entity(gpu.index, inst.gi)
    activity = sample.get(entity, Field.GR_ENGINE_ACTIVE) if sample else None
    mean = window.mean(gpu.index, inst.gi)
    return {
        "gi": inst.gi,
        "profile": inst.profile,
        "placement_start": inst.placement_start,
        "placement_size": inst.placement_size,
        "compute_slices": inst.compute_slices,
        "memory_slices": inst.memory_slices,
        "activity": activity,
        "activity_5m": mean,
        "idle": mean is not None and mean < IDLE_RATIO,
        "memory_used_bytes": sample.get(entity, Field.MEMORY_USED) if sample else None,
        "memory_total_bytes": inst.memory_total_bytes,
        "compute_instances": [
            {
                "ci": ci.ci,
                "profile": ci.profile,
                "activity": sample.get(Entity(gpu.index, inst.gi, ci.ci), Field.GR_ENGINE_ACTIVE) if sample else None,
            }
            for ci in inst.compute_instances
        ],
    }


def layout(snapshot: Snapshot | None, window: ActivityWindow, source: str) -> dict[str, Any]:
    """The node's GPUs and MIG layout with live values: the body of /api/layout."""
    gpus = []
    if snapshot is not None:
        for gpu in snapshot.topology.gpus:
            sample = snapshot.samples.get(gpu.index)
            whole = Entity(gpu.index)
            gpus.append(
                {
                    "gpu": gpu.index,
                    "uuid": gpu.uuid,
                    "model": gpu.model,
                    "board": gpu.board,
                    "mig_mode": gpu.mig_mode,
                    "stale": gpu.index in snapshot.stale_gpus or sample is None,
                    "activity": sample.get(whole, Field.GR_ENGINE_ACTIVE) if sample and not gpu.mig_enabled else None,
                    "memory_used_bytes": sample.get(whole, Field.MEMORY_USED) if sample else None,
                    "memory_total_bytes": gpu.memory_total_bytes,
                    "instances": [_instance(gpu, inst, snapshot, window) for inst in gpu.instances],
                }
            )
    return {
        "version": __version__,
        "source": source,
        "timestamp": snapshot.timestamp if snapshot else None,
        "idle_threshold": IDLE_RATIO,
        "idle_window_seconds": window.seconds,
        "idle_window_covered_seconds": window.covered,
        "gpus": gpus,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.1f}"


def _slices(start: int | None, size: int) -> str:
    """The memory slices an instance covers, e.g. "4-7"; "?" where the source gives no placement."""
    return "?" if start is None else f"{start}-{start + size - 1}"


def _label(inst: dict[str, Any]) -> str:
    """The box label: the profile, and the memory in use where the box is wide enough to hold it."""
    with_memory = f"{inst['profile']} · {_gib(inst['memory_used_bytes'])}/{inst['memory_total_bytes'] / GIB:.0f} GiB"
    fits = len(with_memory) * _CHAR_PX <= inst["memory_slices"] * _SLICE_PX
    return with_memory if fits else str(inst["profile"])


def _gpu_section(gpu: dict[str, Any]) -> str:
    state = " stale" if gpu["stale"] else ""
    heading = f"GPU {gpu['gpu']} · {html.escape(gpu['model'])} · MIG {html.escape(gpu['mig_mode'])}" + (
        " · <b>stale: no fresh sample</b>" if gpu["stale"] else ""
    )
    parts = [f"<section class='gpu{state}' data-gpu='{gpu['gpu']}'><h2>{heading}</h2>"]
    if not gpu["instances"]:
        parts.append(
            f"<p class='whole'>Whole GPU: activity <b>{_pct(gpu['activity'])}</b>, memory "
            f"{_gib(gpu['memory_used_bytes'])} / {_gib(gpu['memory_total_bytes'])} GiB</p></section>"
        )
        return "".join(parts)
    compute = sum(i["compute_slices"] for i in gpu["instances"])
    memory = sum(i["memory_slices"] for i in gpu["instances"])
    title = f"{compute} of 7 compute and {memory} of 8 memory slices in use"
    if any(i["placement_start"] is None for i in gpu["instances"]):
        parts.append(f"<p>{title}; no slice map: this source does not report placements.</p>")
    else:
        boxes = [
            SliceBox(i["placement_start"], i["memory_slices"], i["compute_slices"], _label(i), i["activity"], i["idle"])
            for i in gpu["instances"]
        ]
        try:
            parts.append(slice_map_svg(board(gpu["board"] or ""), boxes, title=title))
        except ValueError as exc:  # a board the catalog lacks, or a placement off its map: the table still lists all
            parts.append(f"<p>No slice map: {html.escape(str(exc))}</p>")
    rows = "".join(
        f"<tr class='{'idle' if i['idle'] else ''}'><td>GI {i['gi']}</td><td>{html.escape(i['profile'])}</td>"
        f"<td>{_slices(i['placement_start'], i['placement_size'])}</td>"
        f"<td>{_pct(i['activity'])}</td><td>{_pct(i['activity_5m'])}</td>"
        f"<td>{_gib(i['memory_used_bytes'])} / {i['memory_total_bytes'] / GIB:.1f} GiB</td>"
        f"<td>{'idle' if i['idle'] else ''}</td></tr>"
        for i in gpu["instances"]
    )
    parts.append(
        "<table><tr><th>instance</th><th>profile</th><th>memory slices</th><th>activity</th><th>5-min mean</th>"
        f"<th>memory used</th><th></th></tr>{rows}</table></section>"
    )
    return "".join(parts)


def layout_fragment(data: dict[str, Any]) -> str:
    """The GPU sections of the page, re-fetched by the page's script."""
    if data["timestamp"] is None:
        return "<p>No sample yet.</p>"
    idle = sum(i["idle"] for g in data["gpus"] for i in g["instances"])
    count = sum(len(g["instances"]) for g in data["gpus"])
    stamp = time.strftime("%H:%M:%S", time.localtime(data["timestamp"]))
    window = f"{data['idle_window_seconds'] / 60:.0f} min"
    if data["idle_window_covered_seconds"] < data["idle_window_seconds"]:
        window += f", {data['idle_window_covered_seconds']:.0f} s of it sampled so far"
    summary = (
        f"<p class='summary' data-timestamp='{data['timestamp']:.3f}'>{len(data['gpus'])} GPUs, {count} GPU "
        f"instances, <b class='{'idle' if idle else ''}'>{idle} idle</b> (mean activity under "
        f"{data['idle_threshold']:.0%} over {window}) · sampled {stamp}</p>"
    )
    return summary + "".join(_gpu_section(g) for g in data["gpus"])


_SCRIPT = """
const layout = document.getElementById('layout'), statusLine = document.getElementById('status');
async function refresh() {
  try {
    const response = await fetch('layout.html', {cache: 'no-store'});
    if (!response.ok) throw new Error('HTTP ' + response.status);
    layout.innerHTML = await response.text();
    statusLine.textContent = 'live · updated ' + new Date().toLocaleTimeString();
    statusLine.className = 'live';
  } catch (err) {
    statusLine.textContent = 'not updating: ' + err.message;
    statusLine.className = 'error';
  }
}
setInterval(refresh, REFRESH_MS);
"""


def landing_page(data: dict[str, Any], refresh_s: float) -> str:
    """The whole page: header, the current layout, and the script that keeps it live."""
    refresh_ms = int(min(max(refresh_s, 1.0), 10.0) * 1000)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mig-exporter</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:sans-serif;margin:1.5em;color:#102a43}} h1{{margin:0 0 .2em}} h2{{font-size:1em;margin:1.2em 0 .3em}}
section.gpu{{border-top:1px solid #ddd;padding-top:.3em}} section.stale{{opacity:.6}}
svg{{max-width:100%;height:auto;display:block}} table{{border-collapse:collapse;font-size:.85em;margin:.3em 0}}
td,th{{padding:1px 10px;text-align:left}} tr.idle td,b.idle{{color:#b00}} #status.live{{color:#2a7}}
#status.error{{color:#b00;font-weight:bold}}
</style></head>
<body><h1>mig-exporter {html.escape(data["version"])}</h1>
<p>Source: <b>{html.escape(data["source"])}</b> · <a href="metrics">/metrics</a> · <a href="api/layout">/api/layout</a>
· <a href="healthz">/healthz</a> · <a href="readyz">/readyz</a> · <span id="status" class="live">live</span></p>
<div id="layout">{layout_fragment(data)}</div>
<script>{_SCRIPT.replace("REFRESH_MS", str(refresh_ms))}</script>
</body></html>
"""


def _current(request: web.Request) -> dict[str, Any]:
    landing = request.app[LANDING]
    return layout(landing.sampler.snapshot, landing.window, landing.sampler.source.name)


async def index(request: web.Request) -> web.Response:
    data = _current(request)
    return web.Response(text=landing_page(data, request.app[LANDING].sampler.interval), content_type="text/html")


async def fragment(request: web.Request) -> web.Response:
    return web.Response(
        text=layout_fragment(_current(request)), content_type="text/html", headers={"Cache-Control": "no-store"}
    )


async def api_layout(request: web.Request) -> web.Response:
    return web.json_response(_current(request), headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, sampler: Sampler) -> None:
    """Serve the landing page, its live fragment and /api/layout from `app`."""
    app[LANDING] = Landing(sampler)
    app.router.add_get("/", index)
    app.router.add_get("/layout.html", fragment)
    app.router.add_get("/api/layout", api_layout)
