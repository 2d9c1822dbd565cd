"""Per-instance statistics over a window, from aggregates the server computes and that merge exactly.

The report's unit of time is the step: per step, the mean of the instance's activity samples. The server
folds the steps of a span into a few numbers per instance (see `queries`): how many steps, the sum of their
means, how many are at or below each threshold right-sizing tests, how many are active per day, maxima.
Counts and sums add up across spans and maxima combine, so any split of the window gives the same Tally.

Right-sizing tests the nearest-rank 95th percentile of the step means against thresholds: "the p95 is at or
below t" holds exactly when at least rank = ceil(0.95 n) of the n steps are, so decisions are exact. The
p95 shown is the server's interpolated quantile of the span (the step-weighted mean over spans when there are
several), kept inside the interval the exact tests leave for it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.contract.thresholds import ONE_OFF_MAX_DAYS, RIGHT_SIZING_PERCENTILE, THRESHOLD_TOLERANCE

HEAT_COLUMNS = 168
DAY = 86400.0
JOULES_PER_KWH = 3.6e6

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
    """The evaluation times of a window, start, start + step, ..., end; its days and its heatmap columns.

    Days count back from the end: day d holds the steps in (end - (d + 1) days, end - d days].
    """

    start: float
    end: float
    step: float

    @property
    def points(self) -> int:
        return math.floor((self.end - self.start) / self.step + 1e-9) + 1

    def time(self, index: int) -> float:
        return self.start + index * self.step

    def index(self, t: float) -> int:
        return round((t - self.start) / self.step)

    def day(self, t: float) -> int:
        """The day a step at time t belongs to."""
        return math.floor((self.end - t) / DAY + 1e-9)

    @property
    def days(self) -> int:
        return self.day(self.start) + 1

    def day_end(self, day: int) -> float:
        return self.end - day * DAY

    @property
    def column_steps(self) -> int:
        """Steps per heatmap column (the last column may hold fewer)."""
        return math.ceil(self.points / HEAT_COLUMNS)

    @property
    def columns(self) -> int:
        return math.ceil(self.points / self.column_steps)


def idle_below(idle_threshold: float) -> float:
    """The value a step mean must be below to count as idle (tolerant of float round-trips)."""
    return idle_threshold - THRESHOLD_TOLERANCE


@dataclass
class Tally:
    """Running aggregates for one instance; add server answers for spans of the window in any order."""

    idle_threshold: float
    thresholds: dict[int, float]  # compute slices -> the step mean at or below which demand fits them
    steps: int = 0
    total: float = 0.0  # sum of the step means
    fits: Counter[int] = field(default_factory=Counter)  # compute slices -> steps at or below its threshold
    active: Counter[int] = field(default_factory=Counter)  # day -> steps at or above the idle threshold
    quantiles: list[tuple[int, float]] = field(default_factory=list)  # (steps in the span, the span's p95)
    peak: float = -math.inf
    memory_total: float = 0.0
    memory_samples: int = 0
    memory_peak: float = -math.inf
    heat: dict[int, float] = field(default_factory=dict)  # heatmap column -> mean of its step means
    energy_joules: float | None = None  # estimated energy over the steps; None without the energy rule's series

    def summary(self, columns: int) -> Summary | None:
        """The statistics, or None when no activity was seen."""
        n = self.steps
        if n == 0:
            return None
        idle = n - sum(self.active.values())
        rank = _rank(n)
        weight = sum(w for w, _ in self.quantiles)
        estimate = sum(w * q for w, q in self.quantiles) / weight if weight else 0.0
        peak = min(1.0, max(self.peak, 0.0))
        low, high = 0.0, peak  # the exact tests bound the p95: keep the shown one inside
        bound = idle_below(self.idle_threshold)
        low, high = (low, min(high, bound)) if idle >= rank else (max(low, bound), high)
        for slices, threshold in self.thresholds.items():
            if self.fits[slices] >= rank:
                high = min(high, threshold)
            else:
                low = max(low, threshold)
        return Summary(
            samples=n,
            mean=self.total / n,
            p95=round(min(max(estimate, low), high), 4),
            max=peak,
            idle_fraction=idle / n,
            idle_steps=idle,
            fit_steps=tuple((s, self.fits[s]) for s in sorted(self.thresholds)),
            active_days=tuple(sorted(d for d, steps in self.active.items() if steps)),
            memory_mean_bytes=self.memory_total / self.memory_samples if self.memory_samples else 0.0,
            memory_max_bytes=max(self.memory_peak, 0.0),
            heat=tuple(self.heat.get(c) for c in range(columns)),
            energy_kwh=None if self.energy_joules is None else self.energy_joules / JOULES_PER_KWH,
        )


def _rank(n: int) -> int:
    return max(1, math.ceil(RIGHT_SIZING_PERCENTILE * n - 1e-9))


@dataclass(frozen=True, slots=True)
class Summary:
    """What the window says about one instance's use, with the exact evidence right-sizing decides on."""

    samples: int  # steps with activity data
    mean: float
    p95: float  # shown; decisions use the counts below
    max: float
    idle_fraction: float
    idle_steps: int
    fit_steps: tuple[tuple[int, int], ...]  # (compute slices, steps whose demand fits them), ascending
    active_days: tuple[int, ...]  # days with active steps (0 = the window's last day)
    memory_mean_bytes: float
    memory_max_bytes: float
    heat: tuple[float | None, ...]  # mean activity per heatmap column, None where there was no data
    energy_kwh: float | None = None  # estimated (see Tally.energy_joules)

    @property
    def rank(self) -> int:
        """How many steps must be at or below a value for the p95 to be at or below it (nearest rank)."""
        return _rank(self.samples)

    @property
    def p95_idle(self) -> bool:
        """The p95 of the step means is below the idle threshold."""
        return self.idle_steps >= self.rank

    def p95_fits(self, compute_slices: int) -> bool:
        """The p95 demand (with headroom) fits this many compute slices (never more than its own)."""
        return dict(self.fit_steps).get(compute_slices, 0) >= self.rank

    @property
    def recurring(self) -> bool:
        """Active on separate days, or on more consecutive days than one job over midnight touches."""
        runs, longest, previous, length = 0, 0, None, 0
        for day in self.active_days:
            length = length + 1 if previous is not None and day == previous + 1 else 1
            runs += length == 1
            longest = max(longest, length)
            previous = day
        return runs >= 2 or longest > ONE_OFF_MAX_DAYS
