"""Read a window of the exporter's series from Prometheus, chunk by chunk, into per-instance accumulators.

Activity and memory come from range queries of `avg_over_time` / `max_over_time` over one
step (minus a millisecond, so a sample on the step grid is never counted in two steps), so
every sample in the window counts once whatever the scrape interval. Identity (profile,
placement, model, pods) comes from instant `last_over_time` queries at the end of each chunk.
Each query spans at most one chunk: at most MAX_POINTS_PER_QUERY steps and CHUNK_SECONDS.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.contract import families as fam
from exporter.mig.catalog import Board, board_for_model
from exporter.model import Field
from exporter.report.prometheus import MAX_POINTS_PER_QUERY, PrometheusClient, PrometheusError, chunks
from exporter.report.stats import Accumulator, Grid, InstanceKey
from exporter.timespec import format_duration, format_time, parse_duration

ACTIVITY = fam.INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE].series
MEMORY_USED = fam.INSTANCE_MEMORY_USED.series
MEMORY_TOTAL = fam.INSTANCE_MEMORY_TOTAL.series
INSTANCE_INFO = fam.INSTANCE_INFO.series
GPU_INFO = fam.GPU_INFO.series
POD_INFO = fam.INSTANCE_POD_INFO.series
# One query covers at most this much time, so instant `last_over_time` lookups stay small.
CHUNK_SECONDS = 2 * 86400
# Data may start this late (as a share of the window, at least two steps) before the window counts as uncovered.
COVERAGE_SLACK = 0.01


class NoDataError(PrometheusError):
    """The server answers but holds no (or too little) data for the report."""


@dataclass
class GpuSeen:
    """A GPU as its mig_gpu_info series last described it."""

    node: str
    gpu: str
    model: str
    mig_enabled: bool
    board: Board | None
    present: bool = False  # seen in the window's last chunk


@dataclass
class InstanceSeen:
    """A GPU instance seen in the window and what was accumulated about it."""

    key: InstanceKey
    acc: Accumulator
    placement_start: int | None = None
    memory_total_bytes: float = 0.0
    pods: set[str] = field(default_factory=set)
    present: bool = False  # listed by mig_instance_info in the window's last chunk


@dataclass
class History:
    """Everything read for a report."""

    url: str
    grid: Grid
    node_label: str
    matchers: str
    gpus: dict[tuple[str, str], GpuSeen]
    instances: dict[InstanceKey, InstanceSeen]
    retention: str | None


Progress = Callable[[int, int], None]
T = TypeVar("T")
QUERIES_PER_CHUNK = 8


class Collector:
    """Runs the queries of one report against one server."""

    def __init__(
        self,
        client: PrometheusClient,
        grid: Grid,
        *,
        idle_threshold: float,
        node_label: str = "instance",
        matchers: str = "",
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.grid = grid
        self.idle_threshold = idle_threshold
        self.node_label = node_label
        self.matchers = matchers
        self.progress = progress
        self._done = 0
        self._total = 0
        self.gpus: dict[tuple[str, str], GpuSeen] = {}
        self.instances: dict[InstanceKey, InstanceSeen] = {}
        self.pods: dict[tuple[str, str, str], set[str]] = {}  # (node, gpu, gi) -> namespace/pod

    def selector(self, metric: str) -> str:
        return f"{metric}{{{self.matchers}}}" if self.matchers else metric

    async def collect(self) -> History:
        """Read the window; raise NoDataError when there is nothing to report on."""
        retention = await self.client.retention()
        self._check_retention(retention)
        step = self.grid.step
        max_points = min(MAX_POINTS_PER_QUERY, max(1, math.floor(CHUNK_SECONDS / step)))
        parts = chunks(self.grid.start, self.grid.end, step, max_points)
        self._total = len(parts) * QUERIES_PER_CHUNK
        self._tick(0)
        for index, (start, end) in enumerate(parts):
            await self._chunk(start, end, last=index == len(parts) - 1)
        for seen in self.instances.values():
            # Present at the end: listed by mig_instance_info, or still reporting activity, in the last chunk.
            seen.present = seen.present or seen.acc.last_seen >= parts[-1][0]
        self._check_data(retention)
        for seen in self.instances.values():
            seen.pods = self.pods.get((seen.key.node, seen.key.gpu, seen.key.gi), set())
        return History(self.client.url, self.grid, self.node_label, self.matchers, self.gpus, self.instances, retention)

    def _tick(self, n: int) -> None:
        self._done += n
        if self.progress is not None:
            self.progress(self._done, self._total)

    async def _counted(self, job: Awaitable[T]) -> T:
        result = await job
        self._tick(1)
        return result

    async def _chunk(self, start: float, end: float, *, last: bool) -> None:
        step = self.grid.step
        window = f"[{format_duration(step - 0.001)}]"
        lookback = f"[{format_duration(end - start + step)}]"
        range_queries = [
            f"{fn}({self.selector(metric)}{window})"
            for fn, metric in (
                ("avg_over_time", ACTIVITY),
                ("max_over_time", ACTIVITY),
                ("avg_over_time", MEMORY_USED),
                ("max_over_time", MEMORY_USED),
            )
        ]
        pods_by = f"{self.node_label}, gpu, gi, namespace, pod"
        instant_queries = [
            *(
                f"last_over_time({self.selector(metric)}{lookback})"
                for metric in (INSTANCE_INFO, GPU_INFO, MEMORY_TOTAL)
            ),
            f"group by ({pods_by}) (last_over_time({self.selector(POD_INFO)}{lookback}))",
        ]
        try:
            async with asyncio.TaskGroup() as group:
                ranges = [
                    group.create_task(self._counted(self.client.query_range(q, start, end, step)))
                    for q in range_queries
                ]
                instants = [group.create_task(self._counted(self.client.query(q, end))) for q in instant_queries]
        except* PrometheusError as failed:
            raise failed.exceptions[0] from None
        act_mean, act_max, mem_mean, mem_max = (task.result() for task in ranges)
        info, gpu_info, mem_total, pods = (task.result() for task in instants)
        for series in act_mean:
            self._instance(series.labels, ACTIVITY).acc.add_activity_means(series.points)
        for series in act_max:
            self._instance(series.labels, ACTIVITY).acc.add_activity_maxima(series.points)
        for series in mem_mean:
            self._instance(series.labels, MEMORY_USED).acc.add_memory_means(series.points)
        for series in mem_max:
            self._instance(series.labels, MEMORY_USED).acc.add_memory_maxima(series.points)
        for sample in mem_total:
            self._instance(sample.labels, MEMORY_TOTAL).memory_total_bytes = sample.value
        for sample in info:
            seen = self._instance(sample.labels, INSTANCE_INFO)
            start_label = sample.labels.get("placement_start", "")
            if start_label.isdigit():
                seen.placement_start = int(start_label)
            seen.present = seen.present or last
        for sample in gpu_info:
            labels = sample.labels
            node = self._node(labels, GPU_INFO)
            model = labels.get("model", "")
            gpu = self.gpus.setdefault(
                (node, labels.get("gpu", "")),
                GpuSeen(node, labels.get("gpu", ""), model, False, board_for_model(model)),
            )
            gpu.model, gpu.board = model, board_for_model(model)
            gpu.mig_enabled = labels.get("mig_mode", "").startswith("enabled")
            gpu.present = gpu.present or last
        for sample in pods:
            labels = sample.labels
            where = (self._node(labels, POD_INFO), labels.get("gpu", ""), labels.get("gi", ""))
            self.pods.setdefault(where, set()).add(f"{labels.get('namespace', '')}/{labels.get('pod', '')}")

    def _node(self, labels: Mapping[str, str], metric: str) -> str:
        try:
            return labels[self.node_label]
        except KeyError:
            present = ", ".join(sorted(k for k in labels if k != "__name__"))
            raise NoDataError(
                f"series of {metric} at {self.client.url} have no {self.node_label!r} label to tell nodes apart "
                f"(labels: {present}): pick one with --node-label"
            ) from None

    def _instance(self, labels: Mapping[str, str], metric: str) -> InstanceSeen:
        key = InstanceKey(
            self._node(labels, metric), labels.get("gpu", ""), labels.get("gi", ""), labels.get("profile", "")
        )
        seen = self.instances.get(key)
        if seen is None:
            seen = self.instances[key] = InstanceSeen(key, Accumulator(self.grid, self.idle_threshold))
        return seen

    def _check_retention(self, retention: str | None) -> None:
        if retention is None:
            return
        try:
            kept = parse_duration(retention.split(" ")[0])
        except ValueError:
            return  # size-based retention only ("10GiB"): the coverage check below decides
        window = self.grid.end - self.grid.start
        if window > kept:
            raise NoDataError(
                f"--window {format_duration(window)} is longer than the retention of Prometheus at "
                f"{self.client.url} ({retention}): use --window {format_duration(kept)} or less"
            )

    def _check_data(self, retention: str | None) -> None:
        where = f"at {self.client.url} between {format_time(self.grid.start)} and {format_time(self.grid.end)}"
        if not self.instances:
            raise NoDataError(
                f"no series for {self.selector(INSTANCE_INFO)} or {self.selector(ACTIVITY)} {where}: "
                "is the exporter scraped by this server (and does --match select it)?"
            )
        summaries = [s for s in self.instances.values() if s.acc.count]
        if not summaries:
            raise NoDataError(
                f"no series for {self.selector(ACTIVITY)} {where} although {len(self.instances)} GPU instances "
                "exist: the source does not read activity (see mig_exporter_field_supported)"
            )
        first = min(s.acc.first_seen for s in summaries)
        window = self.grid.end - self.grid.start
        slack = max(2 * self.grid.step, COVERAGE_SLACK * window)
        if first > self.grid.start + slack:
            kept = f", retention {retention}" if retention else ""
            raise NoDataError(
                f"--window {format_duration(window)} reaches back to {format_time(self.grid.start)} but Prometheus "
                f"at {self.client.url} holds {ACTIVITY} only from {format_time(first)} "
                f"({format_duration(self.grid.end - first)} of data{kept}): use --window "
                f"{format_duration(math.floor((self.grid.end - first) / 3600) * 3600 or self.grid.step)} or less"
            )
