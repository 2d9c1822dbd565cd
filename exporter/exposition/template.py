"""A shape's exposition with holes for the values: every byte but the values written by prometheus-client.

`Template` renders each family of a shape once, through prometheus-client's own `generate_latest`
(text and OpenMetrics) with a placeholder value, and keeps what the library wrote: the HELP/TYPE
lines and each series' line prefix (name, sorted and escaped labels). Per sample, `fill` writes
the header, then for each series whose value is present its prefix and the value as
`floatToGoString` writes it, so the bytes are those `generate_latest` gives for the same families
(a property test holds it to that). Constant families (identity, slice counts) are rendered whole
once. Both formats share one body per family where their prefixes agree, as they do for classic
metric names.

Building and filling are generators that yield between slices of under a millisecond, so a caller
on the event loop can let other work run in between (`Renderer.steps`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence

from prometheus_client import exposition as text_format
from prometheus_client import utils as client_utils
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import CollectorRegistry

from exporter.exposition.series import AnyFamily, DynamicFamily, EntityValues, FamilyTemplate, Row, RowOf, Rows
from exporter.model import Entity, Snapshot

# Work between two yields, well under a millisecond each: lines filled per sample, and lines
# prometheus-client renders while a template is built (a new shape). A request that arrives
# meanwhile waits for about two slices.
STEP_LINES = 500
BUILD_LINES = 150


def float_to_go_string(value: float) -> str:
    """prometheus-client's number formatting (untyped in the library)."""
    text: str = client_utils.floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


_PLACEHOLDER = 0.0
_PLACEHOLDER_TEXT = float_to_go_string(_PLACEHOLDER)
_EMPTY: EntityValues = {}


class Format(enum.Enum):
    """An exposition format, by the content type it is served with."""

    TEXT = text_format.CONTENT_TYPE_PLAIN_0_0_4
    OPENMETRICS = openmetrics_format.CONTENT_TYPE_LATEST

    @property
    def content_type(self) -> str:
        return str(self.value)

    @classmethod
    def for_accept(cls, accept: str) -> Format:
        """The format prometheus-client's own negotiation (`choose_encoder`) picks for an Accept header."""
        _, content_type = text_format.choose_encoder(accept)
        return cls.OPENMETRICS if content_type.startswith("application/openmetrics-text") else cls.TEXT

    def generate(self, families: Iterable[Metric]) -> str:
        """prometheus-client's exposition of `families` in this format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(list(families)))
        if self is Format.OPENMETRICS:
            out: bytes = openmetrics_format.generate_latest(registry)  # type: ignore[no-untyped-call]
        else:
            out = text_format.generate_latest(registry)
        return out.decode()


FORMATS = tuple(Format)


class _Families:
    """A collector that yields fixed families (prometheus-client's registry wants a collector)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class ValueText:
    """A value's text as `floatToGoString` writes it, with the line's newline; remembers recent values.

    Many values recur within a sample (a GPU instance with one compute instance reads the same ratio
    on both) and from sample to sample (memory sizes, steady loads, whole degrees); a small memo,
    emptied when full, halves the cost of formatting. Zeros are not memoised: -0.0 equals 0.0 as a
    key but is written apart.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self.memo: dict[float, str] = {}
        self._zero = float_to_go_string(0.0) + "\n"
        self._negative_zero = float_to_go_string(-0.0) + "\n"

    def __call__(self, value: float) -> str:
        if not value:
            return self._negative_zero if math.copysign(1.0, value) < 0 else self._zero
        text = self.memo.get(value)
        if text is None:
            text = float_to_go_string(value) + "\n"
            if len(self.memo) >= self._limit:
                self.memo.clear()
            self.memo[value] = text
        return text


def _lines(fmt: Format, metric: Metric) -> tuple[str, list[str]]:
    """prometheus-client's header and sample lines (with their newlines) for one family."""
    out = fmt.generate([metric])
    trailer = _TRAILERS[fmt]
    if trailer:
        out = out.removesuffix(trailer)
    lines = out.split("\n")[:-1]  # label values and help texts have their newlines escaped
    count = len(metric.samples)
    header, samples = lines[: len(lines) - count], lines[len(lines) - count :]
    if any(not line.startswith("#") for line in header) or any(line.startswith("#") for line in samples):
        raise ValueError(f"unexpected exposition layout for {metric.name}")
    return "".join(f"{line}\n" for line in header), [f"{line}\n" for line in samples]


def _metric(family: AnyFamily, samples: Iterable[tuple[Mapping[str, str], float]]) -> Metric:
    metric = Metric(family.name, family.documentation, family.type)
    name = family.sample_name
    for labels, value in samples:
        metric.add_sample(name, dict(labels), value)
    return metric


def _sample_lines(
    fmt: Format, family: AnyFamily, samples: Sequence[tuple[Mapping[str, str], float]]
) -> Iterator[list[str]]:
    """prometheus-client's sample lines for a family, in batches of BUILD_LINES."""
    for start in range(0, len(samples), BUILD_LINES):
        yield _lines(fmt, _metric(family, samples[start : start + BUILD_LINES]))[1]


def _prefixes(fmt: Format, family: AnyFamily, labels: Sequence[Mapping[str, str]]) -> Iterator[list[str]]:
    """Each series' line prefix (up to its value) as prometheus-client writes it, in batches."""
    suffix = f" {_PLACEHOLDER_TEXT}\n"
    for lines in _sample_lines(fmt, family, [(lbl, _PLACEHOLDER) for lbl in labels]):
        if not all(line.endswith(suffix) for line in lines):
            raise ValueError(f"unexpected sample layout for {family.name}")
        yield [line[: -len(suffix) + 1] for line in lines]


def _shared(per_format: dict[Format, list[str]]) -> dict[Format, list[str]]:
    """The same list object for formats whose prefixes agree, so their bodies are filled once."""
    first: list[str] | None = None
    for fmt, prefixes in per_format.items():
        if first is None:
            first = prefixes
        elif prefixes == first:
            per_format[fmt] = first
    return per_format


class _Static:
    """A family whose series are fixed by the shape; values are read per sample.

    Keeps only what filling needs (prefixes, compiled keys), not the declared series and their label
    dicts, which would cost memory and garbage-collector time for the life of the shape.
    """

    def __init__(self, family: FamilyTemplate, headers: dict[Format, str], row_of: RowOf) -> None:
        self.headers = headers
        self.reader = family.reader
        self.keys = [] if family.reader.constant else [self.reader.compile(s.key, row_of) for s in family.series]
        self.prefixes: dict[Format, list[str]] = {}
        self.bodies: dict[Format, str] | None = None  # constant families: rendered whole

    def fill(self, snapshot: Snapshot, rows: Rows, text: ValueText, out: dict[Format, list[str]]) -> int:
        bodies = self.bodies
        if bodies is None:
            texts = self.reader.texts(snapshot, rows, self.keys, text, text.memo)
            bodies = {}
            made: dict[int, str] = {}
            for fmt in out:
                prefixes = self.prefixes[fmt]
                body = made.get(id(prefixes))
                if body is None:
                    body = made[id(prefixes)] = _join(prefixes, texts)
                bodies[fmt] = body
        for fmt, parts in out.items():
            parts.append(self.headers[fmt])
            parts.append(bodies[fmt])
        return len(self.keys)


def _join(prefixes: list[str], texts: list[str | None]) -> str:
    """The lines of the series whose value is present."""
    parts: list[str] = []
    append = parts.append
    for prefix, value in zip(prefixes, texts, strict=True):
        if value is not None:
            append(prefix)
            append(value)
    return "".join(parts)


class _Dynamic:
    """A family whose label sets come from each sample: prefixes are rendered once per label set seen."""

    def __init__(self, family: DynamicFamily, headers: dict[Format, str], limit: int = 4096) -> None:
        self.family = family
        self.headers = headers
        self._limit = limit
        self._prefixes: dict[tuple[str, ...], dict[Format, str]] = {}
        # The last sample's rows and their bodies: these families (field support, error counts) rarely change
        # from one sample to the next, so an unchanged set of rows reuses its text.
        self._last: list[Row] | None = None
        self._bodies: dict[Format, str] = {}

    def prepare(self, snapshot: Snapshot) -> Generator[None, None, list[Row]]:
        """This sample's rows, with the prefixes of label sets not seen before rendered in batches."""
        series: list[Row] = list(self.family.rows(snapshot))
        if self._last is not None and _same_rows(series, self._last):
            return self._last  # every label set has its prefix, and fill reuses the bodies
        self._last, self._bodies = None, {}
        unseen = list(dict.fromkeys(labels for labels, _ in series if labels not in self._prefixes))
        if len(self._prefixes) + len(unseen) > max(self._limit, 2 * len(series)):  # forget label sets gone by
            self._prefixes.clear()
            unseen = list(dict.fromkeys(labels for labels, _ in series))
        names = self.family.labelnames
        for start in range(0, len(unseen), BUILD_LINES):
            batch = unseen[start : start + BUILD_LINES]
            labels = [dict(zip(names, values, strict=True)) for values in batch]
            per_format = {fmt: next(_prefixes(fmt, self.family, labels), []) for fmt in FORMATS}
            for i, values in enumerate(batch):
                self._prefixes[values] = {fmt: per_format[fmt][i] for fmt in FORMATS}
            yield
        return series

    def fill(self, series: list[Row], text: ValueText, out: dict[Format, list[str]]) -> int:
        prefixes, bodies = self._prefixes, self._bodies
        self._last = series
        for fmt, parts in out.items():
            body = bodies.get(fmt)
            if body is None:
                body = bodies[fmt] = "".join(
                    part for labels, value in series for part in (prefixes[labels][fmt], text(value))
                )
            parts.append(self.headers[fmt])
            parts.append(body)
        return len(series)


def _same_rows(rows: list[Row], last: list[Row]) -> bool:
    """Equal rows, zeros of the same sign included (-0.0 == 0.0, but they are written apart)."""
    if rows != last:
        return False
    pairs = zip(rows, last, strict=True)
    return all(math.copysign(1.0, a) == math.copysign(1.0, b) for (_, a), (_, b) in pairs if not a)


class Template:
    """The exposition of one shape, with holes for the values. Build with `Template.build`."""

    def __init__(self) -> None:
        self._families: list[_Static | _Dynamic] = []
        self._entities: list[Entity] = []
        self._rows: dict[Entity, int] = {}

    def _row_of(self, entity: Entity) -> int:
        row = self._rows.get(entity)
        if row is None:
            row = self._rows[entity] = len(self._entities)
            self._entities.append(entity)
        return row

    @classmethod
    def build(cls, families: Iterable[AnyFamily]) -> Generator[None, None, Template]:
        """Render every family's fixed parts through prometheus-client, yielding between batches."""
        template = cls()
        for family in families:
            headers = {fmt: _lines(fmt, _metric(family, ()))[0] for fmt in FORMATS}
            if isinstance(family, DynamicFamily):
                template._families.append(_Dynamic(family, headers))
                continue
            static = _Static(family, headers, template._row_of)
            per_format: dict[Format, list[str]] = {fmt: [] for fmt in FORMATS}
            for fmt in FORMATS:
                batches = (
                    _sample_lines(fmt, family, family.series)
                    if family.reader.constant
                    else _prefixes(fmt, family, [s.labels for s in family.series])
                )
                for batch in batches:
                    per_format[fmt].extend(batch)
                    yield
            if family.reader.constant:
                static.bodies = {fmt: "".join(lines) for fmt, lines in per_format.items()}
            else:
                static.prefixes = _shared(per_format)
            template._families.append(static)
            yield
        template._rows.clear()  # needed only while building
        return template

    def fill(
        self, snapshot: Snapshot, formats: Iterable[Format], text: ValueText
    ) -> Generator[None, None, dict[Format, str]]:
        """This snapshot's exposition in each format, yielding every STEP_LINES lines."""
        samples = snapshot.samples
        rows: list[EntityValues | None] = []
        for entity in self._entities:
            sample = samples.get(entity.gpu)
            rows.append(None if sample is None else sample.values.get(entity, _EMPTY))
        out: dict[Format, list[str]] = {fmt: [] for fmt in formats}
        budget = STEP_LINES
        for family in self._families:
            if isinstance(family, _Dynamic):
                budget -= family.fill((yield from family.prepare(snapshot)), text, out)
            else:
                budget -= family.fill(snapshot, rows, text, out)
            if budget <= 0:
                yield
                budget = STEP_LINES
        yield  # joining a large node's body is a slice of its own (about 1 ms for 1 MB)
        for fmt, parts in out.items():
            parts.append(_TRAILERS[fmt])
        return {fmt: "".join(parts) for fmt, parts in out.items()}


_TRAILERS = {fmt: fmt.generate([]) for fmt in FORMATS}  # "# EOF\n" for OpenMetrics
