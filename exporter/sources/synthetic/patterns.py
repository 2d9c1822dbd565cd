"""Workload patterns: deterministic functions of time that give an activity or memory level 0..1."""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Protocol

DAY = 86400.0


def _unit_noise(seed: str, t: float) -> float:
    """A deterministic pseudo-random number in [-1, 1) for this seed and whole second."""
    digest = hashlib.blake2b(f"{seed}:{math.floor(t)}".encode(), digest_size=8).digest()
    (raw,) = struct.unpack("<Q", digest)
    return float(raw) / 2**63 - 1.0


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


class Pattern(Protocol):
    """A level as a function of time; `noise` adds a deterministic jitter of that amplitude."""

    @property
    def noise(self) -> float:
        """Amplitude of the deterministic jitter added to the level."""
        ...

    def base(self, t: float) -> float:
        """The level at time t before noise."""
        ...


def evaluate(pattern: Pattern, t: float, seed: str) -> float:
    """The pattern's level at unix time t, with its noise, clipped to 0..1."""
    level = pattern.base(t)
    if pattern.noise:
        level += pattern.noise * _unit_noise(seed, t)
    return _clip(level)


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing running: always 0."""

    noise: float = 0.0

    def base(self, t: float) -> float:
        return 0.0


@dataclass(frozen=True, slots=True)
class Steady:
    """A constant level."""

    level: float
    noise: float = 0.0

    def base(self, t: float) -> float:
        return self.level


@dataclass(frozen=True, slots=True)
class Diurnal:
    """A daily cycle around `mean`, peaking at `peak_hour` (UTC)."""

    mean: float
    amplitude: float
    peak_hour: float = 14.0
    period: float = DAY
    noise: float = 0.0

    def base(self, t: float) -> float:
        phase = 2 * math.pi * (t - self.peak_hour * 3600.0) / self.period
        return self.mean + self.amplitude * math.cos(phase)


@dataclass(frozen=True, slots=True)
class Bursty:
    """On at `high` for `duty` of every `period` seconds, otherwise at `low`."""

    high: float
    low: float = 0.0
    period: float = 600.0
    duty: float = 0.5
    offset: float = 0.0
    noise: float = 0.0

    def base(self, t: float) -> float:
        position = ((t - self.offset) % self.period) / self.period
        return self.high if position < self.duty else self.low


@dataclass(frozen=True, slots=True)
class Ramp:
    """A sawtooth: rises linearly from `start` to `end` over `period` seconds, then starts again."""

    start: float
    end: float
    period: float = DAY
    offset: float = 0.0
    noise: float = 0.0

    def base(self, t: float) -> float:
        position = ((t - self.offset) % self.period) / self.period
        return self.start + (self.end - self.start) * position


PATTERNS: dict[str, type] = {
    "idle": Idle,
    "steady": Steady,
    "diurnal": Diurnal,
    "bursty": Bursty,
    "ramp": Ramp,
}
