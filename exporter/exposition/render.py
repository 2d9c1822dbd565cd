"""Snapshot -> exposition bytes, through a template built once per shape (template.py).

`Renderer` keeps the template of the latest shape (topology, pod attribution, naming mode) and
builds it again only when a builder's shape changes; each sample then costs only its values.
`steps` does the work in slices, yielding in between so the event loop can serve requests while a
large node renders; `render` runs it to the end (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable

from exporter.exposition.series import Builder
from exporter.exposition.template import Format, Template, ValueText
from exporter.model import Snapshot


class Renderer:
    """Renders snapshots in the formats asked for, from the families of `builders`."""

    def __init__(self, builders: Iterable[Builder]) -> None:
        self.builders = tuple(builders)
        self._shapes: tuple[object, ...] | None = None
        self._template: Template | None = None
        self._text = ValueText()

    def steps(self, snapshot: Snapshot, formats: Iterable[Format]) -> Generator[None, None, dict[Format, bytes]]:
        """Render `snapshot` in each format, yielding between slices of work."""
        shapes = tuple(builder.shape(snapshot) for builder in self.builders)
        if self._template is None or shapes != self._shapes:
            families = (family for builder in self.builders for family in builder.families(snapshot))
            self._template = yield from Template.build(families)
        self._shapes = shapes  # an equal shape from a new discovery: compare by identity from now on
        texts = yield from self._template.fill(snapshot, formats, self._text)
        return {fmt: text.encode() for fmt, text in texts.items()}

    def render(self, snapshot: Snapshot, fmt: Format = Format.TEXT) -> bytes:
        """`snapshot` in one format, all at once."""
        steps = self.steps(snapshot, (fmt,))
        while True:
            try:
                next(steps)
            except StopIteration as done:
                bodies: dict[Format, bytes] = done.value
                return bodies[fmt]
