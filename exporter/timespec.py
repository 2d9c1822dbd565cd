"""Times and Prometheus-style durations (`30d`, `5m`, `1h30m`) given on the command line."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `14d`, `1h30m` or `300s`; ValueError with the expected syntax otherwise."""
    value = text.strip()
    pos = 0
    total = 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit (ms, s, m, h, d, w, y), e.g. 30d or 1h30m"
        )
    if total <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return total


def format_duration(seconds: float) -> str:
    """A Prometheus duration for a number of seconds, in days at most (`14d`, `1h30m`, `2d3h`)."""
    remaining = round(seconds * 1000)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit] * 1000)
        if remaining >= size:
            count, remaining = divmod(remaining, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_time(text: str, now: float) -> float:
    """Unix seconds of `now`, a number of unix seconds, or an ISO 8601 date or time (UTC unless it says otherwise)."""
    value = text.strip()
    if value == "now":
        return now
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use now, unix seconds or ISO 8601 such as 2026-11-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(seconds: float) -> str:
    """A unix time as `2026-11-01 00:00 UTC`."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
