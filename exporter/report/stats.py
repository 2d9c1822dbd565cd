"""Per-instance statistics over a window, accumulated chunk by chunk in bounded memory.

Activity arrives as one mean per step (`avg_over_time` over the step) and one maximum per
step (`max_over_time`); memory likewise. The p95 is the nearest-rank 95th percentile of the
step means, read from a histogram of 1/1000-wide bins, so a month at one-minute steps for a
thousand instances needs no more memory than a day. The heatmap keeps a fixed number of
columns, each the mean of the steps that fall in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

HISTOGRAM_BINS = 1000
HEAT_COLUMNS = 168
P95 = 0.95

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InstanceKey:
    """A GPU instance on a node: the node label, GPU index, GPU-instance id and profile."""

    node: str
    gpu: str
    gi: str
    profile: str

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.node, label_number(self.gpu, -1), label_number(self.gi, -1), self.profile)


def label_number(text: str, otherwise: T) -> int | T:
    """The number a `gpu` or `gi` label holds ("3" -> 3), or `otherwise` for any other text ("", "²", "x")."""
    return int(text) if text.isascii() and text.isdigit() else otherwise


@dataclass(frozen=True, slots=True)
class Grid:
    """The evaluation times of a window: start, start + step, ..., end; and how they map to heatmap columns."""

    start: float
    end: float
    step: float

    @property
    def points(self) -> int:
        return math.floor((self.end - self.start) / self.step + 1e-9) + 1

    @property
    def columns(self) -> int:
        return min(HEAT_COLUMNS, self.points)


@dataclass
class Accumulator:
    """Running sums for one instance; add chunks of points in any order, then read `summary`."""

    grid: Grid
    idle_threshold: float
    count: int = 0
    total: float = 0.0
    idle: int = 0
    peak: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (HISTOGRAM_BINS + 1))
    heat_sum: list[float] = field(default_factory=list)
    heat_count: list[int] = field(default_factory=list)
    memory_count: int = 0
    memory_total: float = 0.0
    memory_peak: float = 0.0
    first_seen: float = math.inf
    last_seen: float = -math.inf

    def __post_init__(self) -> None:
        self.heat_sum = [0.0] * self.grid.columns
        self.heat_count = [0] * self.grid.columns

    def add_activity_means(self, points: Iterable[tuple[float, float]]) -> None:
        """Per-step mean activity (0..1; NaN points are skipped)."""
        grid, columns = self.grid, len(self.heat_sum)
        per_column, last_column = grid.points / columns, columns - 1
        histogram, heat_sum, heat_count = self.histogram, self.heat_sum, self.heat_count
        for t, raw in points:
            if math.isnan(raw):
                continue
            value = min(1.0, max(0.0, raw))
            self.count += 1
            self.total += value
            if value < self.idle_threshold:
                self.idle += 1
            histogram[round(value * HISTOGRAM_BINS)] += 1
            column = min(last_column, max(0, int(round((t - grid.start) / grid.step) / per_column)))
            heat_sum[column] += value
            heat_count[column] += 1
            self.first_seen = min(self.first_seen, t)
            self.last_seen = max(self.last_seen, t)

    def add_activity_maxima(self, points: Iterable[tuple[float, float]]) -> None:
        """Per-step maximum activity."""
        for _, value in points:
            if not math.isnan(value):
                self.peak = max(self.peak, min(1.0, value))

    def add_memory_means(self, points: Iterable[tuple[float, float]]) -> None:
        """Per-step mean memory used, in bytes."""
        for _, value in points:
            if not math.isnan(value):
                self.memory_count += 1
                self.memory_total += value

    def add_memory_maxima(self, points: Iterable[tuple[float, float]]) -> None:
        """Per-step maximum memory used, in bytes."""
        for _, value in points:
            if not math.isnan(value):
                self.memory_peak = max(self.memory_peak, value)

    def summary(self) -> Summary | None:
        """The statistics, or None when no activity was seen."""
        if self.count == 0:
            return None
        return Summary(
            samples=self.count,
            mean=self.total / self.count,
            p95=percentile_from_histogram(self.histogram, P95),
            max=max(self.peak, percentile_from_histogram(self.histogram, 1.0)),
            idle_fraction=self.idle / self.count,
            memory_mean_bytes=self.memory_total / self.memory_count if self.memory_count else 0.0,
            memory_max_bytes=self.memory_peak,
            heat=tuple(s / c if c else None for s, c in zip(self.heat_sum, self.heat_count, strict=True)),
            first_seen=self.first_seen,
            last_seen=self.last_seen,
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """What the window says about one instance's use."""

    samples: int
    mean: float
    p95: float
    max: float
    idle_fraction: float
    memory_mean_bytes: float
    memory_max_bytes: float
    heat: tuple[float | None, ...]  # mean activity per heatmap column, None where there was no data
    first_seen: float
    last_seen: float


def percentile_from_histogram(histogram: Sequence[int], q: float) -> float:
    """Nearest-rank percentile: the smallest bin value with at least q of all counts at or below it."""
    n = sum(histogram)
    rank = max(1, math.ceil(q * n))
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return index / (len(histogram) - 1)
    return 1.0
