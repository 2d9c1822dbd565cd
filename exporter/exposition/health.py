"""The exporter's own health families: build, source state, sample age and cost, errors, field support."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from exporter import __version__
from exporter.contract import families as fam
from exporter.exposition.series import CONSTANT, AnyFamily, Builder, DynamicFamily, FamilyTemplate, Row, SnapshotValue
from exporter.model import Field, Snapshot

_FIELD_NAMES = [(fld, fld.value) for fld in Field]


def _errors(snapshot: Snapshot) -> list[Row]:
    return sorted(snapshot.errors.items())


def _field_support(not_read: Mapping[str, str]) -> Callable[[Snapshot], Iterator[Row]]:
    """Per GPU and field: 1 where some entity has it, 0 with the reason where the source cannot read it.

    `not_read` names fields the exporter does not read at all (a counters file may list them), with the reason.
    """
    extra = sorted(not_read.items())

    def rows(snapshot: Snapshot) -> Iterator[Row]:
        for index, sample in sorted(snapshot.samples.items()):
            gpu = str(index)
            present = set().union(*sample.values.values())
            unsupported = sample.unsupported
            for fld, name in _FIELD_NAMES:
                if fld in unsupported:
                    yield (gpu, name, unsupported[fld]), 0
                elif fld in present:
                    yield (gpu, name, ""), 1
            for name, reason in extra:
                yield (gpu, name, reason), 0

    return rows


def health_families(not_read: Mapping[str, str] | None = None) -> Builder:
    """The exporter's own families; `not_read` adds fields it does not read to `mig_exporter_field_supported`."""
    field_support = _field_support(not_read or {})

    def build(snapshot: Snapshot) -> Iterator[AnyFamily]:
        yield from _health(snapshot)
        yield DynamicFamily.of(fam.FIELD_SUPPORTED, field_support)

    return Builder(build)


def _health(snapshot: Snapshot) -> Iterator[AnyFamily]:
    build = FamilyTemplate.of(fam.BUILD_INFO, CONSTANT)
    build.add([__version__, snapshot.source], 1)
    up = FamilyTemplate.of(fam.SOURCE_UP, SnapshotValue(lambda s: 1 if s.source_up else 0))
    up.add([snapshot.source], None)
    last = FamilyTemplate.of(fam.LAST_SAMPLE_TIMESTAMP, SnapshotValue(lambda s: s.timestamp))
    last.add([], None)
    duration = FamilyTemplate.of(fam.SAMPLE_DURATION, SnapshotValue(lambda s: s.duration))
    duration.add([], None)
    yield from (build, up, last, duration)
    yield DynamicFamily.of(fam.ERRORS, _errors)
    changes = FamilyTemplate.of(fam.TOPOLOGY_CHANGES, SnapshotValue(lambda s: s.topology_changes))
    changes.add([], None)
    yield changes


exporter_families = health_families()
