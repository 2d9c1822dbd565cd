"""Read a window of the exporter's history from the server, shard by shard, into per-instance tallies.

First a few cheap probes for the whole fleet: the retention, the nodes (label values, from the index), that
data reaches back to the window's start, and which days the 5m rollup rules cover. Then the nodes are cut
into shards of SHARD_NODES; each shard's identity (what each GPU and instance looked like last, the pods it
held) and aggregates (see `queries`) are read span by span (see `spans`), and the finished shard is handed
to the caller at once, so memory holds only the shards in flight. A query the server refuses for its size
is asked again in two halves, down to one step of one node.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from exporter.contract import recorded
from exporter.mig.catalog import Board, board_for_model
from exporter.report import spans
from exporter.report.prometheus import PrometheusClient, PrometheusError, QueryTooLargeError, Retention, Sample
from exporter.report.queries import (
    ACTIVITY,
    GPU_INFO,
    INSTANCE_INFO,
    MEMORY_TOTAL,
    MEMORY_USED,
    ROLLUP_STEP,
    Queries,
    Span,
)
from exporter.report.rightsize import Policy, compute_slices_of, fit_thresholds
from exporter.report.stats import DAY, Grid, InstanceKey, Tally
from exporter.timespec import format_duration, format_time, parse_duration

SHARD_NODES = 8  # nodes per shard: a dgx-h100 node has 24 GPU instances, so about 200 series per query
POINTS_PER_QUERY = 2_000_000  # steps x series one query may evaluate (a subquery holds them all in memory)
SERIES_PER_NODE = 64  # assumed before a shard's instances are known
MAX_SPLITS = 12  # halvings of one refused query before giving up
PRESENCE_LOOKBACK = DAY  # what each GPU and instance looked like is read from the window's last day
# Data may start this late (as a share of the window, at least two steps) before the window counts as uncovered.
COVERAGE_SLACK = 0.01


class NoDataError(PrometheusError):
    """The server answers but holds no (or too little) data for the report."""


def _first(group: BaseExceptionGroup[PrometheusError]) -> PrometheusError:
    """The first error of a task group's, however deep its groups nest."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _finite(sample: Sample, what: str, url: str, node_label: str) -> float:
    """The sample's value; a PrometheusError naming the series when it is NaN or infinite (or a negative count)."""
    if math.isfinite(sample.value) and (what != "count" or sample.value >= 0):
        return sample.value
    where = ", ".join(f"{k}={sample.labels.get(k, '')}" for k in (node_label, "gpu", "gi", "profile"))
    raise PrometheusError(
        f"Prometheus at {url} answered {sample.value!r} as a {what} of activity for {where}: "
        "the series hold NaN or infinite samples in the window"
    )


@dataclass
class GpuSeen:
    """A GPU as its latest mig_gpu_info series in the window's last day described it."""

    node: str
    gpu: str
    model: str
    mig_enabled: bool
    board: Board | None
    present: bool = True


@dataclass
class InstanceSeen:
    """A GPU instance seen in the window and what was tallied about it."""

    key: InstanceKey
    tally: Tally
    placement_start: int | None = None
    memory_total_bytes: float = 0.0
    pods: set[str] = field(default_factory=set)
    present: bool = False  # listed by mig_instance_info at the last time its GPU reported


@dataclass
class ShardHistory:
    """Everything read about the nodes of one shard."""

    nodes: tuple[str, ...]
    gpus: dict[tuple[str, str], GpuSeen] = field(default_factory=dict)
    instances: dict[InstanceKey, InstanceSeen] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where the figures came from: the server, its retention, raw series or rollups, and what was received."""

    url: str
    retention: Retention
    rollup_days: int  # days of the window read from the 5m rollups
    days: int
    rollup_note: str  # why rollups were or were not used
    requests: int
    bytes: int
    values: int


Progress = Callable[[int, int], None]
Sink = Callable[[ShardHistory], None]


class Collector:
    """Runs the queries of one report against one server."""

    def __init__(
        self,
        client: PrometheusClient,
        grid: Grid,
        policy: Policy,
        *,
        node_label: str = "instance",
        matchers: str = "",
        heat: bool = False,
        progress: Progress | None = None,
        shard_nodes: int = SHARD_NODES,
        points_per_query: int = POINTS_PER_QUERY,
        shards_in_flight: int = 4,
    ) -> None:
        self.client = client
        self.grid = grid
        self.policy = policy
        self.node_label = node_label
        self.matchers = matchers
        self.heat = heat
        self.progress = progress
        self.shard_nodes = max(1, shard_nodes)
        self.points_per_query = points_per_query
        self.shards_in_flight = shards_in_flight
        self.q = Queries(grid.step, node_label=node_label, matchers=matchers, idle_threshold=policy.idle_threshold)
        self.rollup_from_day = -1  # days 0..rollup_from_day are read from the rollups
        self.instances_seen = 0
        self.instances_with_activity = 0

    def selector(self, metric: str) -> str:
        return self.q.selector(metric)

    async def collect(self, sink: Sink) -> Provenance:
        """Read the window into `sink`, one shard at a time; raise NoDataError when there is nothing to review."""
        retention = await self.client.retention()
        self._check_retention(retention)
        nodes = await self._nodes()
        await self._check_coverage(retention)
        note = await self._find_rollups()
        shards = [tuple(nodes[i : i + self.shard_nodes]) for i in range(0, len(nodes), self.shard_nodes)]
        done = 0
        self._tick(done, len(nodes))
        gate = asyncio.Semaphore(self.shards_in_flight)

        async def one(shard: tuple[str, ...]) -> None:
            nonlocal done
            async with gate:
                history = await self._shard(shard)
            sink(history)
            done += len(shard)
            self._tick(done, len(nodes))

        failure: PrometheusError | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for shard in shards:
                    group.create_task(one(shard))
        except* PrometheusError as failed:
            failure = _first(failed)
        if failure is not None:  # raised outside `except*`, which would wrap it in a group on Python 3.11.2
            raise failure
        self._check_instances()
        traffic = self.client.traffic
        return Provenance(
            self.client.url,
            retention,
            self.rollup_from_day + 1,
            self.grid.days,
            note,
            traffic.requests,
            traffic.bytes,
            traffic.values,
        )

    def _tick(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    # -- probes ------------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"at {self.client.url} between {format_time(self.grid.start)} and {format_time(self.grid.end)}"

    async def _nodes(self) -> list[str]:
        matches = [self.selector(INSTANCE_INFO), self.selector(ACTIVITY)]
        nodes = await self.client.label_values(self.node_label, matches, self.grid.start, self.grid.end)
        if nodes:
            return sorted(set(nodes))
        names = await self.client.label_names(matches, self.grid.start, self.grid.end)
        if names:
            present = ", ".join(sorted(n for n in names if n != "__name__"))
            raise NoDataError(
                f"series of {INSTANCE_INFO} at {self.client.url} have no {self.node_label!r} label to tell nodes "
                f"apart (labels: {present}): pick one with --node-label"
            )
        raise NoDataError(
            f"no series for {self.selector(INSTANCE_INFO)} or {self.selector(ACTIVITY)} {self._where()}: "
            "is the exporter scraped by this server (and does --match select it)?"
        )

    def _check_retention(self, retention: Retention) -> None:
        if retention.value is None:
            return
        try:
            kept = parse_duration(retention.value.split(" ")[0])
        except ValueError:
            return  # size-based retention only ("10GiB"): the coverage check decides
        window = self.grid.end - self.grid.start
        if window > kept:
            raise NoDataError(
                f"--window {format_duration(window)} is longer than the retention of Prometheus at "
                f"{self.client.url} ({retention.value}): use --window {format_duration(kept)} or less"
            )

    async def _count(self, expr: str, at: float) -> float:
        samples = await self.client.query(expr, at)
        return samples[0].value if samples else 0.0

    async def _has_activity(self, index: int) -> bool:
        step = self.grid.time(index)
        return await self._count(self.q.samples_since(Span(step, step)), step) > 0

    async def _check_coverage(self, retention: Retention) -> None:
        """Raise NoDataError when the activity data starts well after the window does."""
        grid = self.grid
        slack = min(grid.points - 1, max(2, math.ceil(COVERAGE_SLACK * (grid.points - 1))))
        early = Span(grid.start, grid.time(slack))
        if await self._count(self.q.samples_since(early), early.last) > 0:
            return
        last = grid.points - 1
        if not await self._has_activity(last):
            return  # no activity at the end either: the checks after reading say why
        low, high = slack, last  # no data up to low, data at high
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if await self._has_activity(middle) else (middle, high)
        first = grid.time(high)
        kept = f", retention {retention.value}" if retention.value else ""
        window = grid.end - grid.start
        usable = math.floor((grid.end - first) / 3600) * 3600 or grid.step
        raise NoDataError(
            f"--window {format_duration(window)} reaches back to {format_time(grid.start)} but Prometheus "
            f"at {self.client.url} holds {ACTIVITY} only from {format_time(first)} "
            f"({format_duration(grid.end - first)} of data{kept}): use --window {format_duration(usable)} or less"
        )

    async def _find_rollups(self) -> str:
        """Decide from which day on the rollups are read: the most recent days they fully cover."""
        rollup = recorded.ROLLUP_INTERVAL
        if self.grid.step != ROLLUP_STEP:
            return f"raw series: the {rollup} rollups serve only --step {rollup}"
        lookback = self.grid.step - 0.001
        covered = " * ".join(
            f"((({self.q.series_count(r, lookback)}) or vector(0)) >= bool "
            f"(({self.q.series_count(raw, lookback)}) or vector(0)))"
            for r, raw in (
                (recorded.INSTANCE_ACTIVITY_AVG5M, ACTIVITY),
                (recorded.INSTANCE_MEMORY_USED_AVG5M, MEMORY_USED),
            )
        )
        grid = self.grid
        oldest = grid.days - 1
        # A day is covered when the rollups hold as many series as the raw data at its last step and at the last
        # step of the day before (the window's first step, for its first day).
        checks = [
            (t, v)
            for s in await self.client.query_range(covered, grid.day_end(oldest), grid.end, DAY)
            for t, v in s.points
        ]
        checks += [(grid.start, s.value) for s in await self.client.query(covered, grid.start)]
        passed = {round(t, 3): v == 1 for t, v in checks}

        def ok_at(t: float) -> bool:
            return passed.get(round(max(t, grid.start), 3), False)

        ok = {d: ok_at(grid.day_end(d)) and ok_at(grid.day_end(d + 1)) for d in range(oldest + 1)}
        day = -1
        while ok.get(day + 1, False):
            day += 1
        self.rollup_from_day = day
        names = f"{recorded.INSTANCE_ACTIVITY_AVG5M} and the other {rollup} rollups"
        if day < 0:
            return f"raw series: {names} are not recorded by this server (load deploy/prometheus's rules)"
        if day == oldest:
            return f"{names} (the rollup rules)"
        stamps = await self.client.query(f"timestamp({self.selector(recorded.INSTANCE_ACTIVITY_AVG5M)})", grid.end)
        if stamps:
            phase = round(stamps[0].value - math.floor(stamps[0].value / grid.step) * grid.step, 3)
            self.q.raw_offset = (grid.step - phase) % grid.step
        return f"{names} for the last {day + 1} of {grid.days} days, raw series before (on the rollups' windows)"

    # -- one shard ---------------------------------------------------------------------------------------

    async def _shard(self, nodes: tuple[str, ...]) -> ShardHistory:
        history = ShardHistory(nodes)
        held = await self._identity(history)
        series = len(history.instances) or SERIES_PER_NODE * len(nodes)
        max_steps = max(1, self.points_per_query // series)
        grid = self.grid
        plans = []
        if self.rollup_from_day < grid.days - 1:
            older = spans.plan(grid, max_steps, oldest=grid.days - 1, newest=self.rollup_from_day + 1)
            plans += [(span, False) for span in older]
        if self.rollup_from_day >= 0:
            plans += [(span, True) for span in spans.plan(grid, max_steps, oldest=self.rollup_from_day, newest=0)]
        sizes = {s for i in history.instances.values() if (s := compute_slices_of(i.key.profile)) is not None}
        tests: dict[float, dict[int, int]] = {}  # threshold -> {compute slices of the instances: slices they fit}
        for size in sorted(sizes):
            for fit, threshold in fit_thresholds(f"{size}g.", self.policy).items():
                tests.setdefault(threshold, {})[size] = fit
        async with asyncio.TaskGroup() as group:
            for span, rollup in plans:
                for kind in (self._steps, self._sum, self._p95, self._active, self._peak, self._memory, self._energy):
                    group.create_task(self._split_on_refusal(kind, history, nodes, span, rollup))
                for threshold, fits in tests.items():
                    test = self._fits(threshold, fits)
                    group.create_task(self._split_on_refusal(test, history, nodes, span, rollup))
            if self.heat:
                group.create_task(self._heat(history, nodes, max_steps))
        for seen in history.instances.values():
            seen.pods = held.get((seen.key.node, seen.key.gpu, seen.key.gi), set())
            self.instances_seen += 1
            self.instances_with_activity += seen.tally.steps > 0
        return history

    async def _split_on_refusal(
        self,
        kind: Callable[[ShardHistory, Sequence[str], Span, bool], Awaitable[None]],
        history: ShardHistory,
        nodes: Sequence[str],
        span: Span,
        rollup: bool,
        *,
        depth: int = 0,
    ) -> None:
        """Run one aggregate; when the server refuses it for its size, run it on two halves instead."""
        try:
            await kind(history, nodes, span, rollup)
            return
        except QueryTooLargeError as refused:
            halves = spans.split(self.grid, span)
            if depth >= MAX_SPLITS or (halves is None and len(nodes) == 1):
                raise PrometheusError(
                    f"{refused}; still refused for one step of one node or after {depth} splits"
                ) from None
        parts: list[tuple[Sequence[str], Span]]
        if halves is not None:
            parts = [(nodes, halves[0]), (nodes, halves[1])]
        else:
            middle = len(nodes) // 2
            parts = [(nodes[:middle], span), (nodes[middle:], span)]
        for part_nodes, part_span in parts:
            await self._split_on_refusal(kind, history, part_nodes, part_span, rollup, depth=depth + 1)

    def _finite(self, sample: Sample, what: str) -> float:
        return _finite(sample, what, self.client.url, self.node_label)

    def _instance(self, history: ShardHistory, labels: Mapping[str, str]) -> InstanceSeen:
        key = InstanceKey(
            labels.get(self.node_label, ""), labels.get("gpu", ""), labels.get("gi", ""), labels.get("profile", "")
        )
        seen = history.instances.get(key)
        if seen is None:
            tally = Tally(self.policy.idle_threshold, fit_thresholds(key.profile, self.policy))
            seen = history.instances[key] = InstanceSeen(key, tally)
        return seen

    async def _at_end(self, expr: str, span: Span) -> list[Sample]:
        return await self.client.query(expr, span.last)

    async def _steps(self, history: ShardHistory, nodes: Sequence[str], span: Span, rollup: bool) -> None:
        for s in await self._at_end(self.q.step_count(nodes, span, rollup), span):
            self._instance(history, s.labels).tally.steps += round(self._finite(s, "count"))

    async def _sum(self, history: ShardHistory, nodes: Sequence[str], span: Span, rollup: bool) -> None:
        for s in await self._at_end(self.q.activity_sum(nodes, span, rollup), span):
            self._instance(history, s.labels).tally.total += self._finite(s, "sum")

    async def _p95(self, history: ShardHistory, nodes: Sequence[str], span: Span, rollup: bool) -> None:
        for s in await self._at_end(self.q.activity_p95(nodes, span, rollup), span):
            if math.isfinite(s.value):
                self._instance(history, s.labels).tally.quantiles.append((spans.steps(self.grid, span), s.value))

    def _fits(
        self, threshold: float, fits: Mapping[int, int]
    ) -> Callable[[ShardHistory, Sequence[str], Span, bool], Awaitable[None]]:
        """Steps at or below one threshold, for the instances of the sizes it tests (`fits`: size -> slices)."""

        async def run(history: ShardHistory, nodes: Sequence[str], span: Span, rollup: bool) -> None:
            expr = self.q.steps_at_or_below(nodes, span, rollup, sorted(fits), threshold)
            for s in await self._at_end(expr, span):
                seen = self._instance(history, s.labels)
                size = compute_slices_of(seen.key.profile)
                if size is not None and size in fits:
                    seen.tally.fits[fits[size]] += round(self._finite(s, "count"))

        return run

    async def _peak(self, history: ShardHistory, nodes: Sequence[str], span: Span, rollup: bool) -> None:
        for s in await self._at_end(self.q.activity_max(nodes, span, rollup), span):
            tally = self._instance(history, s.labels).tally
            tally.peak = max(tally.peak, s.value)

    async def _memory(self, history: ShardHistory, nodes: Sequence[str], span: Span, rollup: bool) -> None:
        """Memory: the sum, count and maximum of its samples (of the rollups' per-step means and maxima)."""
        totals, counts, peaks = await asyncio.gather(
            *(
                self._at_end(self.q.memory(f, nodes, span, rollup), span)
                for f in ("sum_over_time", "count_over_time", "max_over_time")
            )
        )
        for s in totals:
            self._instance(history, s.labels).tally.memory_total += self._finite(s, "sum")
        for s in counts:
            self._instance(history, s.labels).tally.memory_samples += round(self._finite(s, "count"))
        for s in peaks:
            tally = self._instance(history, s.labels).tally
            tally.memory_peak = max(tally.memory_peak, s.value)

    async def _energy(self, history: ShardHistory, nodes: Sequence[str], span: Span, rollup: bool) -> None:
        """Estimated energy: each step's mean estimated power times the step (steps without an estimate add 0)."""
        for s in await self._at_end(self.q.power_sum(nodes, span), span):
            if math.isfinite(s.value):
                tally = self._instance(history, s.labels).tally
                tally.energy_joules = (tally.energy_joules or 0.0) + s.value * self.grid.step

    async def _active(self, history: ShardHistory, nodes: Sequence[str], span: Span, rollup: bool) -> None:
        """Active steps per day: one value at each day end of the span's whole days, and one at the end of a
        piece of a day (a span inside one day, or the window's first day when it starts inside it)."""
        grid = self.grid
        oldest, newest = grid.day(span.first), grid.day(span.last)
        pieces, whole = [span], None
        if spans.whole_days(grid, span):
            pieces = []
            # a first day the span (or the window) starts inside is counted on its own, from the span's first step
            window_starts_inside = span.first == grid.start and grid.start - grid.day_end(oldest + 1) > grid.step
            if window_starts_inside or grid.index(span.first) != spans.first_index(grid, oldest):
                pieces.append(Span(span.first, grid.time(spans.last_index(grid, oldest))))
                oldest -= 1
            if oldest >= newest:
                whole = (grid.day_end(oldest), grid.day_end(newest))
        points: list[tuple[Mapping[str, str], float, float]] = []
        for piece in pieces:
            width = piece.last - piece.first + grid.step
            answer = await self.client.query(self.q.active_steps(nodes, width, rollup), piece.last)
            points += [(s.labels, piece.last, s.value) for s in answer]
        if whole is not None:
            expr = self.q.active_steps(nodes, DAY, rollup)
            answer_range = await self.client.query_range(expr, whole[0], whole[1], DAY)
            points += [(s.labels, t, v) for s in answer_range for t, v in s.points]
        for labels, t, value in points:
            steps = self._finite(Sample(labels, value), "count")
            self._instance(history, labels).tally.active[grid.day(t)] += round(steps)

    async def _heat(self, history: ShardHistory, nodes: Sequence[str], max_steps: int) -> None:
        """Mean activity per heatmap column (read from the rollups only where they cover the whole window)."""
        grid = self.grid
        k = grid.column_steps
        rollup = self.rollup_from_day == grid.days - 1
        full = grid.points // k  # columns of k steps; a last, shorter one follows when k does not divide the grid
        per_query = max(1, max_steps // k)
        expr = self.q.heat(nodes, k, rollup)
        for first in range(0, full, per_query):
            last = min(full, first + per_query) - 1
            ends = (grid.time((first + 1) * k - 1), grid.time((last + 1) * k - 1))
            for s in await self.client.query_range(expr, ends[0], ends[1], k * grid.step):
                heat = self._instance(history, s.labels).tally.heat
                for t, value in s.points:
                    if math.isfinite(value):
                        heat[(grid.index(t) + 1) // k - 1] = value
        if full * k < grid.points:
            rest = grid.points - full * k
            for sample in await self.client.query(self.q.heat(nodes, rest, rollup), grid.end):
                if math.isfinite(sample.value):
                    self._instance(history, sample.labels).tally.heat[full] = sample.value

    async def _identity(self, history: ShardHistory) -> dict[tuple[str, str, str], set[str]]:
        """What each GPU and GPU instance looked like at the last time it reported; the pods seen, by GPU instance.

        Nodes reporting at the window's end are read there; the others at their last report in its last day.
        """
        nodes = history.nodes
        lookback = min(PRESENCE_LOOKBACK, self.grid.end - self.grid.start + self.grid.step)
        at = self.grid.end
        async with asyncio.TaskGroup() as group:
            gpus = group.create_task(self.client.query(self.q.reported_at(GPU_INFO, nodes), at))
            infos = group.create_task(self.client.query(self.q.reported_at(INSTANCE_INFO, nodes), at))
            totals = group.create_task(self.client.query(self.q.last_value(MEMORY_TOTAL, nodes, lookback), at))
            pods = group.create_task(self.client.series(self.q.pods(nodes), self.grid.start, self.grid.end))
        gpu_samples, info_samples = gpus.result(), infos.result()
        reporting = {s.labels.get(self.node_label, "") for s in gpu_samples}
        if silent := [n for n in nodes if n not in reporting]:
            gpu_samples += await self.client.query(self.q.last_seen(GPU_INFO, silent, lookback), at)
            info_samples += await self.client.query(self.q.last_seen(INSTANCE_INFO, silent, lookback), at)
        self._layout(history, gpu_samples, info_samples)
        for s in totals.result():
            if math.isfinite(s.value):
                self._instance(history, s.labels).memory_total_bytes = s.value
        held: dict[tuple[str, str, str], set[str]] = {}
        for labels in pods.result():
            where3 = (labels.get(self.node_label, ""), labels.get("gpu", ""), labels.get("gi", ""))
            held.setdefault(where3, set()).add(f"{labels.get('namespace', '')}/{labels.get('pod', '')}")
        return held

    def _layout(self, history: ShardHistory, gpus: Sequence[Sample], infos: Sequence[Sample]) -> None:
        """GPUs and instances present: those whose last report is their node's (their GPU's) last report."""
        latest_gpu: dict[tuple[str, str], tuple[float, Mapping[str, str]]] = {}
        node_latest: dict[str, float] = {}
        for s in gpus:
            where = (s.labels.get(self.node_label, ""), s.labels.get("gpu", ""))
            if where not in latest_gpu or s.value > latest_gpu[where][0]:
                latest_gpu[where] = (s.value, s.labels)
            node_latest[where[0]] = max(node_latest.get(where[0], s.value), s.value)
        tolerance = self.grid.step
        for (node, gpu), (seen_at, labels) in latest_gpu.items():
            model = labels.get("model", "")
            history.gpus[(node, gpu)] = GpuSeen(
                node,
                gpu,
                model,
                labels.get("mig_mode", "").startswith("enabled"),
                board_for_model(model),
                present=seen_at >= node_latest[node] - tolerance,
            )
        instances_latest: dict[tuple[str, str], float] = {}
        for s in infos:
            where = (s.labels.get(self.node_label, ""), s.labels.get("gpu", ""))
            instances_latest[where] = max(instances_latest.get(where, s.value), s.value)
        for s in infos:
            seen = self._instance(history, s.labels)
            where = (seen.key.node, seen.key.gpu)
            reference = latest_gpu[where][0] if where in latest_gpu else instances_latest[where]
            if s.value >= reference - tolerance:
                seen.present = True
                start = s.labels.get("placement_start", "")
                seen.placement_start = int(start) if start.isdigit() else None

    def _check_instances(self) -> None:
        if not self.instances_seen:
            raise NoDataError(
                f"no series for {self.selector(INSTANCE_INFO)} or {self.selector(ACTIVITY)} {self._where()}: "
                "is the exporter scraped by this server (and does --match select it)?"
            )
        if not self.instances_with_activity:
            raise NoDataError(
                f"no series for {self.selector(ACTIVITY)} {self._where()} although {self.instances_seen} GPU "
                "instances exist: the source does not read activity (see mig_exporter_field_supported)"
            )
