"""A failure that repeats every cycle is logged when it starts, in a summary while it lasts, and when it ends."""

from __future__ import annotations

import logging

import pytest

from exporter.failurelog import FailureLog
from exporter.sampler import Sampler
from exporter.sources.base import GpuError
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.clock import ManualClock
from tests.support.faults import FaultySource

T0 = 1_790_000_000.0


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records]


def test_start_summary_and_recovery_are_the_only_lines(caplog: pytest.LogCaptureFixture) -> None:
    """A subject failing once a second for 10 minutes writes one line, two summaries and one recovery line."""
    clock = ManualClock(0.0)
    failures = FailureLog(logging.getLogger("test.failures"), summary_every=300, clock=clock)
    caplog.set_level(logging.INFO, "test.failures")
    for second in range(601):
        clock.now = second
        failures.failed("sampling GPU 3", "failed: GPU is lost")
    failures.recovered("sampling GPU 3")
    failures.recovered("sampling GPU 3")  # a second success says nothing
    assert lines(caplog) == [
        ("WARNING", "sampling GPU 3: failed: GPU is lost (further failures are summarised every 5m until it recovers)"),
        (
            "WARNING",
            "sampling GPU 3: still failing after 5m, 300 more failures since the last report (latest: "
            "failed: GPU is lost)",
        ),
        (
            "WARNING",
            "sampling GPU 3: still failing after 10m, 300 more failures since the last report (latest: "
            "failed: GPU is lost)",
        ),
        ("INFO", "sampling GPU 3: recovered after 601 failures over 10m"),
    ]


def test_subjects_are_independent_and_a_new_failure_starts_over(caplog: pytest.LogCaptureFixture) -> None:
    """Two GPUs failing are told apart; one that fails again after recovering gets a new first line."""
    clock = ManualClock(0.0)
    failures = FailureLog(logging.getLogger("test.failures"), clock=clock)
    caplog.set_level(logging.INFO, "test.failures")
    failures.failed("sampling GPU 1", "passed its 1s deadline")
    failures.failed("sampling GPU 2", "failed: xid_79")
    failures.failed("sampling GPU 1", "the previous call has still not returned")
    failures.recovered("sampling GPU 1")
    failures.failed("sampling GPU 1", "failed: xid_79")
    assert [m.split(" (")[0] for _, m in lines(caplog)] == [
        "sampling GPU 1: passed its 1s deadline",
        "sampling GPU 2: failed: xid_79",
        "sampling GPU 1: recovered after 2 failures over 0s",
        "sampling GPU 1: failed: xid_79",
    ]


async def test_a_gpu_failing_every_cycle_is_one_warning_not_one_per_interval(
    dgx: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Twenty failed cycles of one GPU log one warning; its recovery one info line; the counter counts all twenty."""
    source = FaultySource(SyntheticSource(dgx, clock=lambda: T0))
    sampler = Sampler(source, clock=lambda: T0)
    caplog.set_level(logging.INFO, "exporter.sampler")
    source.raise_for[2] = lambda: GpuError("GPU is lost", reason="gpu_lost")
    for _ in range(20):
        snapshot = await sampler.run_once()
    assert snapshot.errors == {("sample", "gpu_lost"): 20}
    del source.raise_for[2]
    await sampler.run_once()
    assert lines(caplog) == [
        ("WARNING", "sampling GPU 2: failed: GPU is lost (further failures are summarised every 5m until it recovers)"),
        ("INFO", "sampling GPU 2: recovered after 20 failures over 0s"),
    ]
    await sampler.close()


async def test_a_hung_gpu_is_told_once(dgx: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    """A call past its deadline, then still running on the next cycles, is one warning in all."""
    source = FaultySource(SyntheticSource(dgx, clock=lambda: T0))
    sampler = Sampler(source, deadline=0.05, clock=lambda: T0)
    caplog.set_level(logging.INFO, "exporter.sampler")
    source.hang.add(5)
    for _ in range(4):
        await sampler.run_once()
    assert lines(caplog) == [
        (
            "WARNING",
            "sampling GPU 5: passed its 0.05s deadline (further failures are summarised every 5m until it recovers)",
        )
    ]
    source.hang.clear()
    await sampler.close()
