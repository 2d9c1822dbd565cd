"""The PromQL of the capacity review: per-instance aggregates over a span of steps, computed by the server.

The per-step series is the mean of the activity samples in each step, `avg_over_time(x[step - 1ms])`
evaluated on the step grid (a sample on the grid is never counted in two steps), clipped to 0..1, NaN
dropped; or, where the 5m rollup rules are loaded and the step is 5m, the rollup sample in each step. A
subquery `[span:step]` evaluates it at every step of a span (subquery steps are aligned to multiples of the
step, as the grid is) and one function folds the span into numbers that merge across spans: sums, counts by
`count_values` label (bins, slices needed, active or not), maxima. Every query aggregates `by` the node
label, gpu, gi and profile, so several jobs scraping one node add up as one instance.

All strings that come from users (matchers, node names) are already validated or escaped here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.contract import families as fam
from exporter.contract import recorded
from exporter.contract.thresholds import THRESHOLD_TOLERANCE
from exporter.mig.catalog import BOARDS
from exporter.model import Field
from exporter.report.stats import DAY, DISPLAY_BIN, idle_below
from exporter.timespec import format_duration, parse_duration

ACTIVITY = fam.INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE].series
MEMORY_USED = fam.INSTANCE_MEMORY_USED.series
MEMORY_TOTAL = fam.INSTANCE_MEMORY_TOTAL.series
INSTANCE_INFO = fam.INSTANCE_INFO.series
GPU_INFO = fam.GPU_INFO.series
POD_INFO = fam.INSTANCE_POD_INFO.series
ROLLUP_STEP = parse_duration(recorded.ROLLUP_INTERVAL)
# Every compute-slice count a MIG profile has; a profile's name starts with it ("3g.40gb" has 3).
COMPUTE_SLICE_COUNTS = tuple(sorted({p.compute_slices for b in BOARDS.values() for p in b.profiles}))
EPSILON = 0.001  # seconds: ranges end this much short of a step, so they never reach the previous step's end

BIN_LABEL = "bin"
SLICES_LABEL = "slices"
ACTIVE_LABEL = "active"


def promql_string(text: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def node_matcher(label: str, nodes: Sequence[str]) -> str:
    """A matcher selecting exactly these nodes (a regex alternation of escaped names for several)."""
    if len(nodes) == 1:
        return f"{label}={promql_string(nodes[0])}"
    return f"{label}=~{promql_string('|'.join(re.escape(n) for n in nodes))}"


def _profile_with(compute_slices: int) -> str:
    """A matcher for the profiles with this many compute slices (`3g.40gb`, `3g.20gb`, ...)."""
    return "profile=~" + promql_string(re.escape(f"{compute_slices}g.") + ".*")


def _range(seconds: float) -> str:
    return f"[{format_duration(seconds)}]"


def _number(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class Span:
    """Consecutive steps of the grid: first and last step times."""

    first: float
    last: float


class Queries:
    """The review's PromQL for one window, policy and data source."""

    def __init__(
        self,
        step: float,
        *,
        node_label: str,
        matchers: str,
        idle_threshold: float,
        compute_headroom: float,
    ) -> None:
        self.step = step
        self.node_label = node_label
        self.matchers = matchers
        self.idle_below = idle_below(idle_threshold)
        self.demand_factor = 1 + compute_headroom  # written with repr: the server multiplies by the same double
        self.by = f"{node_label}, gpu, gi, profile"
        self.step_range = _range(step - EPSILON)

    def selector(self, metric: str, nodes: Sequence[str] = (), *extra: str) -> str:
        parts = [m for m in (self.matchers, node_matcher(self.node_label, nodes) if nodes else "", *extra) if m]
        return f"{metric}{{{','.join(parts)}}}" if parts else metric

    def _over(self, span: Span) -> str:
        """A subquery range holding exactly the span's steps."""
        return f"[{format_duration(span.last - span.first + self.step - EPSILON)}:{format_duration(self.step)}]"

    def _raw_range(self, span: Span) -> str:
        """A range of raw samples holding exactly those the span's steps read."""
        return _range(span.last - span.first + self.step - EPSILON)

    # -- the per-step series ---------------------------------------------------------------------------

    def activity_steps(self, nodes: Sequence[str], rollup: bool, *extra: str) -> str:
        """Per-step mean activity, clipped to 0..1, NaN dropped."""
        if rollup:
            inner = f"last_over_time({self.selector(recorded.INSTANCE_ACTIVITY_AVG5M, nodes, *extra)}{self.step_range})"
        else:
            inner = f"avg_over_time({self.selector(ACTIVITY, nodes, *extra)}{self.step_range})"
        return f"(clamp_max(clamp_min({inner}, 0), 1) >= 0)"

    def memory_steps(self, nodes: Sequence[str], rollup: bool) -> str:
        """Per-step mean memory used, NaN dropped."""
        if rollup:
            inner = f"last_over_time({self.selector(recorded.INSTANCE_MEMORY_USED_AVG5M, nodes)}{self.step_range})"
        else:
            inner = f"avg_over_time({self.selector(MEMORY_USED, nodes)}{self.step_range})"
        return f"({inner} >= 0)"

    # -- aggregates over a span, instant queries at span.last ------------------------------------------------

    def bins(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        """Steps by 1%-wide activity bin, bins anchored so that bin < 0 is exactly `idle`."""
        bin_of = f"floor(({self.activity_steps(nodes, rollup)} - {_number(self.idle_below)}) / {_number(DISPLAY_BIN)})"
        return f'sum_over_time(count_values by ({self.by}) ("{BIN_LABEL}", {bin_of}){self._over(span)})'

    def fits(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        """Steps by the compute slices their demand needs: ceil(mean x compute slices x (1 + headroom) - tolerance).

        A profile's compute slices come from its name, one branch per slice count, so each series is read once.
        """
        branches = " or ".join(
            f"ceil({self.activity_steps(nodes, rollup, _profile_with(n))} * {n} * "
            f"{_number(self.demand_factor)} - {_number(THRESHOLD_TOLERANCE)})"
            for n in COMPUTE_SLICE_COUNTS
        )
        return f'sum_over_time(count_values by ({self.by}) ("{SLICES_LABEL}", {branches}){self._over(span)})'

    def activity_sum(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        return f"sum by ({self.by}) (sum_over_time({self.activity_steps(nodes, rollup)}{self._over(span)}))"

    def activity_max(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        metric = recorded.INSTANCE_ACTIVITY_MAX5M if rollup else ACTIVITY
        return f"max by ({self.by}) (max_over_time({self.selector(metric, nodes)}{self._raw_range(span)}))"

    def memory_sum(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        return f"sum by ({self.by}) (sum_over_time({self.memory_steps(nodes, rollup)}{self._over(span)}))"

    def memory_steps_count(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        return f"sum by ({self.by}) (count_over_time({self.memory_steps(nodes, rollup)}{self._over(span)}))"

    def memory_max(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        metric = recorded.INSTANCE_MEMORY_USED_MAX5M if rollup else MEMORY_USED
        return f"max by ({self.by}) (max_over_time({self.selector(metric, nodes)}{self._raw_range(span)}))"

    def active_days(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        """Steps, active (mean at or above the idle threshold) or not, per day: evaluate at each day end in the span.

        Steps before the span's first are filtered out, for the window's first (partial) day.
        """
        since = f"(vector(time()) >= {_number(span.first)})"
        steps = f"({self.activity_steps(nodes, rollup)} and on () {since})"
        width = min(DAY, span.last - span.first + self.step) - EPSILON
        indicator = f"({steps} >= bool {_number(self.idle_below)})"
        inner = f'count_values by ({self.by}) ("{ACTIVE_LABEL}", {indicator})'
        return f"sum_over_time({inner}[{format_duration(width)}:{format_duration(self.step)}])"

    def heat(self, nodes: Sequence[str], column_steps: int, rollup: bool) -> str:
        """Mean activity per heatmap column of `column_steps` steps, evaluated at each column's last step."""
        over = f"[{format_duration(column_steps * self.step - EPSILON)}:{format_duration(self.step)}]"
        return f"avg by ({self.by}) (avg_over_time({self.activity_steps(nodes, rollup)}{over}))"

    # -- identity ------------------------------------------------------------------------------------------

    def last_seen(self, metric: str, nodes: Sequence[str], lookback: float) -> str:
        """Each series' last sample time within the lookback (its labels say what it was)."""
        over = f"[{format_duration(lookback)}:{format_duration(self.step)}]"
        return f"max_over_time(timestamp({self.selector(metric, nodes)}){over})"

    def last_value(self, metric: str, nodes: Sequence[str], lookback: float) -> str:
        return f"last_over_time({self.selector(metric, nodes)}{_range(lookback)})"

    def pods(self, nodes: Sequence[str]) -> str:
        return self.selector(POD_INFO, nodes)

    # -- whole-window probes -------------------------------------------------------------------------------

    def series_count(self, metric: str, lookback: float) -> str:
        """How many series have a sample in the lookback."""
        return f"count(last_over_time({self.selector(metric)}{_range(lookback)}))"

    def samples_since(self, span: Span) -> str:
        """How many activity series have samples in the span's steps."""
        return f"count(count_over_time({self.selector(ACTIVITY)}{self._raw_range(span)}))"
