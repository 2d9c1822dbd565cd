"""Metric families -> bytes: each snapshot's exposition, rendered at most once per format and served as-is.

A scrape never calls the GPU: it serves the bytes of the latest snapshot, rendered once per
snapshot, format and encoding, by the first scrape that asks for it. The text uses
prometheus-client's own exposition code over a throwaway registry whose only collector yields
families built from the frozen snapshot.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import exposition as text_format
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import CollectorRegistry

from exporter.contract.families import Family
from exporter.model import Snapshot

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

FamilyBuilder = Callable[[Snapshot], Iterable[Metric]]

# prometheus-client versions that know UTF-8 metric names check every label name rune by rune under the
# default OpenMetrics escaping. Every name here is a classic one, for which "allow-utf-8" writes the same
# bytes (tests compare) in about 40% of the time.
_OPENMETRICS_OPTIONS: dict[str, Any] = (
    {"escaping": openmetrics_format.ALLOWUTF8} if hasattr(openmetrics_format, "ALLOWUTF8") else {}
)


def new_family(family: Family) -> GaugeMetricFamily | CounterMetricFamily:
    """An empty prometheus-client family for a family of the contract."""
    kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    return kind(family.name, family.help, labels=list(family.labels))


class _SnapshotCollector:
    """A collector over one frozen snapshot, for one render."""

    def __init__(self, snapshot: Snapshot, builders: Iterable[FamilyBuilder]) -> None:
        self._snapshot = snapshot
        self._builders = tuple(builders)

    def collect(self) -> Iterator[Metric]:
        for build in self._builders:
            yield from build(self._snapshot)


class Rendered:
    """The exposition of one snapshot: each format and encoding is rendered on first use, then kept.

    A snapshot that no scrape asks for is never rendered, so sampling every second while Prometheus
    scrapes every 15 s renders once per scrape, not once per sample; every later scrape of the same
    snapshot, in any number, is served these bytes.
    """

    def __init__(self, snapshot: Snapshot, builders: Iterable[FamilyBuilder]) -> None:
        self.snapshot = snapshot
        self.timestamp = snapshot.timestamp
        self._builders = tuple(builders)
        self._bodies: dict[tuple[bool, bool], bytes] = {}

    @property
    def text(self) -> bytes:
        """Prometheus text format."""
        return self.body(False, False)

    @property
    def openmetrics(self) -> bytes:
        """OpenMetrics text format."""
        return self.body(True, False)

    def body(self, openmetrics: bool, gzipped: bool) -> bytes:
        """The body for a format and encoding."""
        cached = self._bodies.get((openmetrics, gzipped))
        if cached is not None:
            return cached
        if gzipped:
            body = gzip.compress(self.body(openmetrics, False), compresslevel=6, mtime=0)
        else:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_SnapshotCollector(self.snapshot, self._builders))
            if openmetrics:
                body = openmetrics_format.generate_latest(registry, **_OPENMETRICS_OPTIONS)  # type: ignore[no-untyped-call]
            else:
                body = text_format.generate_latest(registry)
        self._bodies[(openmetrics, gzipped)] = body
        return body


def render(snapshot: Snapshot, builders: Iterable[FamilyBuilder]) -> Rendered:
    """The exposition of one snapshot in Prometheus text and OpenMetrics formats (rendered on first use)."""
    return Rendered(snapshot, builders)


class Exposition:
    """Holds the rendered bytes of the latest snapshot; subscribe `update` to the sampler."""

    def __init__(self, builders: Iterable[FamilyBuilder]) -> None:
        self.builders = tuple(builders)
        self.current: Rendered | None = None

    def update(self, snapshot: Snapshot) -> None:
        """Make `snapshot` the one scrapes serve (a single reference swap); it is rendered when first scraped."""
        self.current = render(snapshot, self.builders)


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header asks for OpenMetrics (as Prometheus does when it supports it)."""
    return any(part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(","))
