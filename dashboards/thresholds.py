"""What counts as an idle or under-used MIG slice: the generator's parameters.

The defaults are the metric contract's (exporter.contract.thresholds), which the alert rules are generated from.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.contract.thresholds import IDLE_FOR, IDLE_RATIO, UNDERUSED_RATIO


@dataclass(frozen=True)
class Thresholds:
    """Mean graphics-engine activity (0..1) under which a GPU instance counts as idle or under-used."""

    idle: float = IDLE_RATIO
    underused: float = UNDERUSED_RATIO
    idle_for: str = IDLE_FOR  # how long a slice must stay idle before the Grafana alert fires

    def __post_init__(self) -> None:
        if not 0 < self.idle < self.underused <= 1:
            raise ValueError(
                f"thresholds must satisfy 0 < idle < underused <= 1 (got idle={self.idle}, underused={self.underused})"
            )


DEFAULT_THRESHOLDS = Thresholds()
