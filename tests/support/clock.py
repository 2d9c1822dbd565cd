"""A clock that tests move by hand, shared by a fake driver and the source under test."""

from __future__ import annotations


class ManualClock:
    """Returns `now` until a test changes it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
