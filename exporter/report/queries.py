"""The PromQL of the capacity review: per-instance aggregates over a span of steps, computed by the server.

The per-step series S is the mean of the activity samples in each step, `avg_over_time(x[step - 1ms])`
evaluated on the step grid (a sample on the grid is never counted in two steps); or, where the 5m rollup
rules are loaded and the step is 5m, the rollup sample in each step. A subquery `S[span:step]` evaluates it
at every step of a span (subquery steps are aligned to multiples of the step, as the grid is), and one
`*_over_time` function folds the span into a number that merges across spans: a sum, a count of steps, a
count of steps at or below a threshold, a maximum. Over the rollups, functions that need no threshold read
the rollup samples directly (`f(rollup[span])`), which selects the same samples without a subquery.

The shapes are chosen for the server's cost: a threshold is one comparison per step, and each threshold
test is its own small query over the instances of one profile size (`or` between branches, `count_values`
and arithmetic per step each cost the server more than the whole aggregate). Sums and counts aggregate `by`
the node label, gpu, gi and profile, so several jobs scraping one node add up as one instance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.contract import families as fam
from exporter.contract import recorded
from exporter.model import Field
from exporter.report.stats import idle_below
from exporter.timespec import format_duration, parse_duration

ACTIVITY = fam.INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE].series
MEMORY_USED = fam.INSTANCE_MEMORY_USED.series
MEMORY_TOTAL = fam.INSTANCE_MEMORY_TOTAL.series
INSTANCE_INFO = fam.INSTANCE_INFO.series
GPU_INFO = fam.GPU_INFO.series
POD_INFO = fam.INSTANCE_POD_INFO.series
ROLLUP_STEP = parse_duration(recorded.ROLLUP_INTERVAL)
EPSILON = 0.001  # seconds: ranges end this much short of a step, so they never reach the previous step's end


def promql_string(text: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def node_matcher(label: str, nodes: Sequence[str]) -> str:
    """A matcher selecting exactly these nodes (a regex alternation of escaped names for several)."""
    if len(nodes) == 1:
        return f"{label}={promql_string(nodes[0])}"
    return f"{label}=~{promql_string('|'.join(re.escape(n) for n in nodes))}"


def profile_with(compute_slices: Sequence[int]) -> str:
    """A matcher for the profiles with these compute-slice counts (`3g.40gb`, `3g.20gb`, ...)."""
    sizes = "|".join(str(n) for n in compute_slices)
    return "profile=~" + promql_string(f"({sizes})" + re.escape("g.") + ".*")


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
    """The review's PromQL for one window, idle threshold and data source."""

    def __init__(self, step: float, *, node_label: str, matchers: str, idle_threshold: float) -> None:
        self.step = step
        self.node_label = node_label
        self.matchers = matchers
        self.idle_below = idle_below(idle_threshold)
        self.by = f"{node_label}, gpu, gi, profile"
        self.step_range = _range(step - EPSILON)
        # Where raw spans sit beside rollup spans, raw steps read the windows the rollups summarise: the rule
        # group evaluates at its own phase within each step, so raw reads are shifted back to it.
        self.raw_offset = 0.0

    def _raw_shift(self, rollup: bool) -> str:
        return "" if rollup or self.raw_offset <= 0 else f" offset {format_duration(self.raw_offset)}"

    def selector(self, metric: str, nodes: Sequence[str] = (), *extra: str) -> str:
        parts = [m for m in (self.matchers, node_matcher(self.node_label, nodes) if nodes else "", *extra) if m]
        return f"{metric}{{{','.join(parts)}}}" if parts else metric

    def _over(self, span: Span) -> str:
        """A subquery range holding exactly the span's steps."""
        return f"[{format_duration(span.last - span.first + self.step - EPSILON)}:{format_duration(self.step)}]"

    def _raw_range(self, span: Span) -> str:
        """A range of samples holding exactly those the span's steps read."""
        return _range(span.last - span.first + self.step - EPSILON)

    def steps(self, nodes: Sequence[str], rollup: bool, *extra: str) -> str:
        """The per-step mean activity S, as an instant vector evaluated at a step."""
        if rollup:
            return f"last_over_time({self.selector(recorded.INSTANCE_ACTIVITY_AVG5M, nodes, *extra)}{self.step_range})"
        return f"avg_over_time({self.selector(ACTIVITY, nodes, *extra)}{self.step_range}{self._raw_shift(rollup)})"

    def _steps_over(self, function: str, nodes: Sequence[str], span: Span, rollup: bool, *, first: str = "") -> str:
        """`function` over the span's per-step means (the rollup samples themselves where they are read)."""
        if rollup:
            return f"{function}({first}{self.selector(recorded.INSTANCE_ACTIVITY_AVG5M, nodes)}{self._raw_range(span)})"
        return f"{function}({first}{self.steps(nodes, rollup)}{self._over(span)})"

    # -- aggregates over a span: instant queries at span.last -----------------------------------------------

    def step_count(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        return f"sum by ({self.by}) ({self._steps_over('count_over_time', nodes, span, rollup)})"

    def activity_sum(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        return f"sum by ({self.by}) ({self._steps_over('sum_over_time', nodes, span, rollup)})"

    def power_sum(self, nodes: Sequence[str], span: Span) -> str:
        """The sum over the span's steps of each step's mean estimated power (watts): times the step, joules.

        Read from the energy recording rule (an estimate; see dashboards/prometheus_rules.py) at every step.
        """
        steps = f"avg_over_time({self.selector(recorded.INSTANCE_POWER_ESTIMATE, nodes)}{self.step_range})"
        return f"sum by ({self.by}) (sum_over_time({steps}{self._over(span)}))"

    def activity_p95(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        """The span's 95th percentile of the step means, interpolated (shown, never decided on)."""
        return f"max by ({self.by}) ({self._steps_over('quantile_over_time', nodes, span, rollup, first='0.95, ')})"

    def steps_at_or_below(
        self, nodes: Sequence[str], span: Span, rollup: bool, compute_slices: Sequence[int], threshold: float
    ) -> str:
        """Steps of the instances with these compute-slice counts whose mean is at or below the threshold."""
        steps = self.steps(nodes, rollup, profile_with(compute_slices))
        return f"sum by ({self.by}) (count_over_time(({steps} <= {_number(threshold)}){self._over(span)}))"

    def activity_max(self, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        metric = recorded.INSTANCE_ACTIVITY_MAX5M if rollup else ACTIVITY
        over = f"{self._raw_range(span)}{self._raw_shift(rollup)}"
        return f"max by ({self.by}) (max_over_time({self.selector(metric, nodes)}{over}))"

    def active_steps(self, nodes: Sequence[str], width: float, rollup: bool) -> str:
        """Steps whose mean is at or above the idle threshold, in the `width` seconds up to the evaluation."""
        over = f"[{format_duration(width - EPSILON)}:{format_duration(self.step)}]"
        return (
            f"sum by ({self.by}) (count_over_time(({self.steps(nodes, rollup)} >= {_number(self.idle_below)}){over}))"
        )

    def memory(self, function: str, nodes: Sequence[str], span: Span, rollup: bool) -> str:
        """`function` (sum, count or max _over_time) over the memory samples the span's steps read (over the
        rollups: their per-step means, or maxima for max)."""
        if rollup:
            peak = function == "max_over_time"
            metric = recorded.INSTANCE_MEMORY_USED_MAX5M if peak else recorded.INSTANCE_MEMORY_USED_AVG5M
        else:
            metric = MEMORY_USED
        aggregate = "max" if function == "max_over_time" else "sum"
        over = f"{self._raw_range(span)}{self._raw_shift(rollup)}"
        return f"{aggregate} by ({self.by}) ({function}({self.selector(metric, nodes)}{over}))"

    def heat(self, nodes: Sequence[str], column_steps: int, rollup: bool) -> str:
        """Mean activity per heatmap column of `column_steps` steps, evaluated at each column's last step."""
        over = f"[{format_duration(column_steps * self.step - EPSILON)}:{format_duration(self.step)}]"
        return f"avg by ({self.by}) (avg_over_time({self.steps(nodes, rollup)}{over}))"

    # -- identity ------------------------------------------------------------------------------------------

    def reported_at(self, metric: str, nodes: Sequence[str]) -> str:
        """Each series' sample time at the evaluation (within the server's lookback)."""
        return f"timestamp({self.selector(metric, nodes)})"

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
