"""The exporter's own health families: build, source state, sample age and cost, errors, field support."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from exporter import __version__
from exporter.contract import families as fam
from exporter.exposition.render import new_family
from exporter.model import Field, Snapshot


def exporter_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The exporter's own health: build, source state, sample age and cost, errors, topology changes, field support."""
    build = new_family(fam.BUILD_INFO)
    build.add_metric([__version__, snapshot.source], 1)
    up = new_family(fam.SOURCE_UP)
    up.add_metric([snapshot.source], 1 if snapshot.source_up else 0)
    last = new_family(fam.LAST_SAMPLE_TIMESTAMP)
    last.add_metric([], snapshot.timestamp)
    duration = new_family(fam.SAMPLE_DURATION)
    duration.add_metric([], snapshot.duration)
    errors = new_family(fam.ERRORS)
    for (stage, reason), count in sorted(snapshot.errors.items()):
        errors.add_metric([stage, reason], count)
    changes = new_family(fam.TOPOLOGY_CHANGES)
    changes.add_metric([], snapshot.topology_changes)
    supported = new_family(fam.FIELD_SUPPORTED)
    for index, sample in sorted(snapshot.samples.items()):
        present = {f for values in sample.values.values() for f in values}
        for fld in Field:
            if fld in sample.unsupported:
                supported.add_metric([str(index), fld.value, sample.unsupported[fld]], 0)
            elif fld in present:
                supported.add_metric([str(index), fld.value, ""], 1)
    yield from (build, up, last, duration, errors, changes, supported)
