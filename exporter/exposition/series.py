"""What family builders declare, once per topology: each family's series and where each value comes from.

A `Builder` turns the shape of a snapshot (its topology, and whatever else decides names and label
sets, such as pod attribution) into `FamilyTemplate`s. Each series has its labels and a key that the
family's `Reader` turns into this sample's value, or None where the value is absent (a field the
source cannot read, a stale GPU): that series is then left out of this sample's exposition. The few
families whose label sets come from the sample itself (error counters, field support) are
`DynamicFamily`s.

Adding a field is one `FamilyTemplate` and one `add` per entity; the renderer (template.py) gives
every series its line prefix once per shape, so a new family costs only its values per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from exporter.contract.families import Family
from exporter.model import Entity, Field, Snapshot

EntityValues = Mapping[Field, float]
# Per sample, the values of each entity a template reads: None when the entity's GPU has no sample
# (stale), an empty mapping when the GPU has one but nothing was read for the entity.
Rows = Sequence[EntityValues | None]
RowOf = Callable[[Entity], int]


class Reader:
    """Where a family's values come from. `compile` turns a series' key into what `values` reads."""

    __slots__ = ()
    constant: ClassVar[bool] = False  # a constant family is rendered whole once per shape

    def compile(self, key: Any, row_of: RowOf) -> Any:
        return key

    def values(self, snapshot: Snapshot, rows: Rows, keys: Sequence[Any]) -> Iterable[float | None]:
        raise NotImplementedError

    def texts(
        self,
        snapshot: Snapshot,
        rows: Rows,
        keys: Sequence[Any],
        text: Callable[[float], str],
        memo: Mapping[float, str],
    ) -> list[str | None]:
        """Each series' value as `text` writes it (with `memo` of recent ones), or None where absent."""
        out: list[str | None] = []
        append = out.append
        for value in self.values(snapshot, rows, keys):
            if value is None:
                append(None)
            else:
                known = memo.get(value)
                append(known if known is not None else text(value))
        return out


class Constant(Reader):
    """The key is the value: identity series (`*_info`, always 1) and topology facts (slice counts)."""

    constant = True

    def values(self, snapshot: Snapshot, rows: Rows, keys: Sequence[Any]) -> Iterable[float | None]:
        return keys


CONSTANT = Constant()


@dataclass(frozen=True, slots=True)
class EntityField(Reader):
    """The key is an Entity; the value is its `field`, through `transform` (e.g. bytes to MiB) when given."""

    field: Field
    transform: Callable[[float], float] | None = None

    def compile(self, key: Entity, row_of: RowOf) -> int:
        return row_of(key)

    def values(self, snapshot: Snapshot, rows: Rows, keys: Sequence[int]) -> Iterable[float | None]:
        fld, transform = self.field, self.transform
        out: list[float | None] = []
        append = out.append
        for row in keys:
            values = rows[row]
            value = None if values is None else values.get(fld)
            append(value if value is None or transform is None else transform(value))
        return out

    def texts(
        self,
        snapshot: Snapshot,
        rows: Rows,
        keys: Sequence[int],
        text: Callable[[float], str],
        memo: Mapping[float, str],
    ) -> list[str | None]:
        # The values() and texts() loops in one: most families read one field per entity, every sample.
        fld, transform = self.field, self.transform
        out: list[str | None] = []
        append = out.append
        get = memo.get
        for row in keys:
            values = rows[row]
            value = None if values is None else values.get(fld)
            if value is None:
                append(None)
                continue
            if transform is not None:
                value = transform(value)
            known = get(value)
            append(known if known is not None else text(value))
        return out


class EntityFields(Reader):
    """The key is (Entity, Field): series of one family reading different fields (remapped rows by kind)."""

    __slots__ = ()

    def compile(self, key: tuple[Entity, Field], row_of: RowOf) -> tuple[int, Field]:
        return row_of(key[0]), key[1]

    def values(self, snapshot: Snapshot, rows: Rows, keys: Sequence[tuple[int, Field]]) -> Iterable[float | None]:
        return [None if (values := rows[row]) is None else values.get(fld) for row, fld in keys]


ENTITY_FIELDS = EntityFields()


@dataclass(frozen=True, slots=True)
class EntityFieldOr(Reader):
    """The key is (Entity, fallback): its `field`, or the fallback when the GPU's sample lacks it."""

    field: Field

    def compile(self, key: tuple[Entity, float], row_of: RowOf) -> tuple[int, float]:
        return row_of(key[0]), key[1]

    def values(self, snapshot: Snapshot, rows: Rows, keys: Sequence[tuple[int, float]]) -> Iterable[float | None]:
        fld = self.field
        return [None if (values := rows[row]) is None else values.get(fld, fallback) for row, fallback in keys]


@dataclass(frozen=True, slots=True)
class EntityCompute(Reader):
    """The key is an Entity; the value is `compute` of all its values (None: absent)."""

    compute: Callable[[EntityValues], float | None]

    def compile(self, key: Entity, row_of: RowOf) -> int:
        return row_of(key)

    def values(self, snapshot: Snapshot, rows: Rows, keys: Sequence[int]) -> Iterable[float | None]:
        compute = self.compute
        return [None if (values := rows[row]) is None else compute(values) for row in keys]


@dataclass(frozen=True, slots=True)
class SnapshotValue(Reader):
    """One value per snapshot (its time, duration, state), the same for every series of the family."""

    read: Callable[[Snapshot], float | None]

    def values(self, snapshot: Snapshot, rows: Rows, keys: Sequence[Any]) -> Iterable[float | None]:
        return [self.read(snapshot)] * len(keys)


class Series(NamedTuple):
    """One series of a family: its labels and the key its family's reader reads the value with."""

    labels: Mapping[str, str]
    key: Any


@dataclass(slots=True)
class FamilyTemplate:
    """One metric family of a shape: name, help, type and every series it can have, in exposition order."""

    name: str
    documentation: str
    type: str  # "gauge" or "counter" (the name without `_total`, as prometheus-client's families)
    reader: Reader
    labelnames: tuple[str, ...] = ()
    series: list[Series] = field(default_factory=list)

    @classmethod
    def of(cls, family: Family, reader: Reader) -> FamilyTemplate:
        """An empty template for a family of the metric contract."""
        return cls(family.name, family.help, family.kind, reader, family.labels)

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.type == "counter" else self.name

    def add(self, label_values: Sequence[str], key: Any) -> None:
        """A series labelled like the family's label names, in order."""
        self.series.append(Series(dict(zip(self.labelnames, label_values, strict=True)), key))

    def add_labels(self, labels: Mapping[str, str], key: Any) -> None:
        """A series with its own label set (families whose series differ in labels, as dcgm-exporter's)."""
        self.series.append(Series(labels, key))


Row = tuple[tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class DynamicFamily:
    """A family whose label sets come from each sample: `rows` gives (label values, value) in order."""

    name: str
    documentation: str
    type: str
    labelnames: tuple[str, ...]
    rows: Callable[[Snapshot], Iterable[Row]]

    @classmethod
    def of(cls, family: Family, rows: Callable[[Snapshot], Iterable[Row]]) -> DynamicFamily:
        return cls(family.name, family.help, family.kind, family.labels, rows)

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.type == "counter" else self.name


AnyFamily = FamilyTemplate | DynamicFamily


def topology_and_source(snapshot: Snapshot) -> object:
    """The shape most builders depend on: the node's layout and the source's name."""
    return (snapshot.topology, snapshot.source)


@dataclass(frozen=True, slots=True)
class Builder:
    """Families whose names and label sets follow from `shape(snapshot)`: built again only when it changes."""

    families: Callable[[Snapshot], Iterable[AnyFamily]]
    shape: Callable[[Snapshot], object] = topology_and_source
