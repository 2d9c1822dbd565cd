"""What counts as an idle or under-used MIG slice: the generator's parameters.

The defaults equal the numbers in deploy/prometheus/mig-exporter.rules.yml (a test keeps them so).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Mean graphics-engine activity (0..1) under which a GPU instance counts as idle or under-used."""

    idle: float = 0.05
    underused: float = 0.2
    idle_for: str = "1h"  # how long a slice must stay idle before the Grafana alert fires

    def __post_init__(self) -> None:
        if not 0 < self.idle < self.underused <= 1:
            raise ValueError(
                f"thresholds must satisfy 0 < idle < underused <= 1 (got idle={self.idle}, underused={self.underused})"
            )


DEFAULT_THRESHOLDS = Thresholds()
