"""Log lines clients cause: one short line each, at most `burst` per window, the rest counted."""

from __future__ import annotations

import logging

import pytest

from exporter.http.requestlog import ClientLog, RateLimit
from tests.support.clock import ManualClock


def test_lines_past_the_burst_are_counted_in_the_next_one_written(caplog: pytest.LogCaptureFixture) -> None:
    """10 lines per 10 s: the 11th to 30th are left out, and the first line once there is room again says so."""
    clock = ManualClock(1000.0)
    log = ClientLog(logging.getLogger("test.clients"), RateLimit(burst=10, window=10.0, clock=clock))
    with caplog.at_level(logging.INFO, logger="test.clients"):
        for i in range(30):
            log.warning(f"bad request {i}")
        clock.now += 1.0  # one line's worth of room
        log.warning("bad request 30")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"bad request {i}" for i in range(10)] + ["bad request 30 (20 similar lines left out)"]


def test_lines_below_the_log_level_take_no_room(caplog: pytest.LogCaptureFixture) -> None:
    """Events the log level hides (debug at info) neither show nor use up what warnings may write."""
    clock = ManualClock(1000.0)
    log = ClientLog(logging.getLogger("test.levels"), RateLimit(burst=2, window=10.0, clock=clock))
    with caplog.at_level(logging.INFO, logger="test.levels"):
        for _ in range(50):
            log.write(logging.DEBUG, "not HTTP at all")
        log.warning("bad request")
    assert [r.getMessage() for r in caplog.records] == ["bad request"]
