"""Log a failure that repeats every cycle once when it starts, once when it ends, and in a periodic summary.

A GPU that fails every sampling interval would otherwise write a warning a second; the counter
(`mig_exporter_errors_total`) already counts each failure, so the log only has to say when something
started failing, that it still is, and when it recovered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.timespec import format_duration

SUMMARY_EVERY_SECONDS = 300.0


@dataclass(slots=True)
class _Failing:
    since: float
    failures: int  # since the failure started
    reported: int  # failures already told in the first line or a summary
    summarised_at: float


class FailureLog:
    """Failures by subject ("sampling GPU 3"): a line when one starts, a summary while it lasts, one on recovery."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        summary_every: float = SUMMARY_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._every = summary_every
        self._clock = clock
        self._failing: dict[str, _Failing] = {}

    def failed(
        self, subject: str, message: str, exc: BaseException | None = None, *, level: int = logging.WARNING
    ) -> None:
        """Record one failure of `subject`; logged (with `exc`'s traceback, if given) only when it is the first."""
        now = self._clock()
        state = self._failing.get(subject)
        if state is None:
            self._failing[subject] = _Failing(now, 1, 1, now)
            self._log.log(
                level,
                "%s: %s (further failures are summarised every %s until it recovers)",
                subject,
                message,
                format_duration(self._every),
                exc_info=exc,
            )
            return
        state.failures += 1
        if now - state.summarised_at >= self._every:
            self._log.log(
                level,
                "%s: still failing after %s, %d more failures since the last report (latest: %s)",
                subject,
                format_duration(round(now - state.since)),
                state.failures - state.reported,
                message,
            )
            state.reported, state.summarised_at = state.failures, now

    def recovered(self, subject: str) -> None:
        """`subject` succeeded: say so once if it had been failing."""
        state = self._failing.pop(subject, None)
        if state is not None:
            self._log.info(
                "%s: recovered after %d failures over %s",
                subject,
                state.failures,
                format_duration(round(self._clock() - state.since)),
            )
