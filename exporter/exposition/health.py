"""The exporter's own health families: build, source state, sample age and cost, errors, field support."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from exporter import __version__
from exporter.exposition.render import gauge as _gauge
from exporter.model import Field, Snapshot


def exporter_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The exporter's own health: build, source state, sample age and cost, errors, field support."""
    build = _gauge("mig_exporter_build_info", "mig-exporter version and source; always 1", ["version", "source"])
    build.add_metric([__version__, snapshot.source], 1)
    up = _gauge("mig_exporter_source_up", "1 when the last sampling cycle read every GPU", ["source"])
    up.add_metric([snapshot.source], 1 if snapshot.source_up else 0)
    last = _gauge(
        "mig_exporter_last_sample_timestamp_seconds",
        "Unix time the values in this exposition were sampled; scrapes serve the latest sample",
        [],
    )
    last.add_metric([], snapshot.timestamp)
    duration = _gauge("mig_exporter_sample_duration_seconds", "Duration of the last sampling cycle", [])
    duration.add_metric([], snapshot.duration)
    errors = CounterMetricFamily(
        "mig_exporter_errors", "Errors by stage (discover, sample) and reason", labels=["stage", "reason"]
    )
    for (stage, reason), count in sorted(snapshot.errors.items()):
        errors.add_metric([stage, reason], count)
    supported = _gauge(
        "mig_exporter_field_supported",
        "1 when the source reads this field on this GPU; 0 with the reason when it cannot (the series is then absent)",
        ["gpu", "field", "reason"],
    )
    for index, sample in sorted(snapshot.samples.items()):
        present = {f for values in sample.values.values() for f in values}
        for fld in Field:
            if fld in sample.unsupported:
                supported.add_metric([str(index), fld.value, sample.unsupported[fld]], 0)
            elif fld in present:
                supported.add_metric([str(index), fld.value, ""], 1)
    yield from (build, up, last, duration, errors, supported)
