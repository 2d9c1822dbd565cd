"""Rendering on demand: a snapshot is rendered only when scraped, once, and byte-for-byte as prometheus-client does."""

from __future__ import annotations

from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import CollectorRegistry

from exporter.exposition.dcgm import builders_for
from exporter.exposition.render import Exposition, _SnapshotCollector
from exporter.model import Snapshot
from tests.support.snapshots import fixed_snapshot


def test_openmetrics_bytes_match_prometheus_client_defaults() -> None:
    """The faster OpenMetrics escaping writes exactly what prometheus-client's default escaping writes."""
    snapshot = fixed_snapshot()
    exposition = Exposition(builders_for("native"))
    exposition.update(snapshot)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot, exposition.builders))
    assert exposition.current is not None
    assert exposition.current.openmetrics == openmetrics_format.generate_latest(registry)  # type: ignore[no-untyped-call]


def test_snapshots_are_rendered_only_when_scraped_and_only_once() -> None:
    """Publishing snapshots builds no metrics; the first scrape of one renders it, later scrapes reuse the bytes."""
    builds: list[Snapshot] = []

    def counting_builder(snapshot: Snapshot) -> list[object]:
        builds.append(snapshot)
        return []

    exposition = Exposition((counting_builder,))  # type: ignore[arg-type]
    for t in range(5):
        exposition.update(fixed_snapshot("demo", 1_790_000_000.0 + t))
    assert builds == []
    assert exposition.current is not None
    first = exposition.current.body(openmetrics=True, gzipped=True)
    assert exposition.current.body(openmetrics=True, gzipped=True) is first
    assert exposition.current.body(openmetrics=True, gzipped=False) is exposition.current.openmetrics
    assert len(builds) == 1 and builds[0].timestamp == 1_790_000_004.0
