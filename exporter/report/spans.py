"""How the window is cut into spans of steps for the server: whole days, or pieces of one day.

A span is either a run of whole days (counted back from the window's end; the oldest may be partial) or a
piece of one day, so per-day counts always come back whole. Spans are sized so that one query over one
shard evaluates at most a given number of steps; a span the server refuses is split in two, at a day
boundary while it spans several days, else in the middle.
"""

from __future__ import annotations

import math

from exporter.report.queries import Span
from exporter.report.stats import Grid


def first_index(grid: Grid, day: int) -> int:
    """The first step of a day (steps after end - (day + 1) days)."""
    return max(0, math.floor((grid.day_end(day + 1) - grid.start) / grid.step + 1e-9) + 1)


def last_index(grid: Grid, day: int) -> int:
    """The last step of a day (at or before end - day days)."""
    return min(grid.points - 1, math.floor((grid.day_end(day) - grid.start) / grid.step + 1e-9))


def _span(grid: Grid, first: int, last: int) -> Span:
    return Span(grid.time(first), grid.time(last))


def steps(grid: Grid, span: Span) -> int:
    return grid.index(span.last) - grid.index(span.first) + 1


def plan(grid: Grid, max_steps: int, *, oldest: int | None = None, newest: int = 0) -> list[Span]:
    """Spans covering every step of days `oldest` (default: the first) to `newest` once, oldest first, each of
    at most `max_steps` steps."""
    limit = max(1, max_steps)
    out: list[Span] = []
    group: tuple[int, int] | None = None  # first and last index of the days gathered so far
    for day in range(grid.days - 1 if oldest is None else oldest, newest - 1, -1):
        first, last = first_index(grid, day), last_index(grid, day)
        if first > last:
            continue
        if last - first + 1 > limit:
            if group is not None:
                out.append(_span(grid, *group))
                group = None
            out.extend(_span(grid, i, min(last, i + limit - 1)) for i in range(first, last + 1, limit))
        elif group is not None and last - group[0] + 1 <= limit:
            group = (group[0], last)
        else:
            if group is not None:
                out.append(_span(grid, *group))
            group = (first, last)
    if group is not None:
        out.append(_span(grid, *group))
    return out


def whole_days(grid: Grid, span: Span) -> bool:
    """The span ends at the end of its day (it holds whole days, the window's first perhaps partial)."""
    return grid.index(span.last) == last_index(grid, grid.day(span.last))


def day_ends(grid: Grid, span: Span) -> tuple[float, float]:
    """The first and last day end in a span of whole days."""
    return grid.day_end(grid.day(span.first)), grid.day_end(grid.day(span.last))


def split(grid: Grid, span: Span) -> tuple[Span, Span] | None:
    """Two spans that together hold the span's steps, or None for a single step."""
    first, last = grid.index(span.first), grid.index(span.last)
    oldest, newest = grid.day(span.first), grid.day(span.last)
    if oldest > newest:
        middle = (oldest + newest + 1) // 2  # the older part ends with this day
        cut = last_index(grid, middle)
        return _span(grid, first, cut), _span(grid, cut + 1, last)
    if first == last:
        return None
    cut = (first + last) // 2
    return _span(grid, first, cut), _span(grid, cut + 1, last)
