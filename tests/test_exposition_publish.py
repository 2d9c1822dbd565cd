"""Background production: each new sample's bytes are made before any scrape asks, only in the variants asked for."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Callable, Generator, Iterable

import pytest

from exporter.exposition import template
from exporter.exposition.dcgm import builders_for
from exporter.exposition.publish import Exposition, Variant
from exporter.exposition.render import Renderer
from exporter.exposition.series import Builder
from exporter.exposition.template import Format
from exporter.model import Snapshot
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.snapshots import FIXED_TIME, snapshot_at

OM_GZIP = Variant(Format.OPENMETRICS, True)
TEXT = Variant(Format.TEXT, False)


def sample(t: float = FIXED_TIME, scenario: str = "demo") -> Snapshot:
    return snapshot_at(Simulator(load(scenario)), t)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, frozenset[Format]]]:
    """Every render: (the snapshot's timestamp, the formats asked of the renderer)."""
    calls: list[tuple[float, frozenset[Format]]] = []
    original = Renderer.steps

    def spy(
        self: Renderer, snapshot: Snapshot, formats: Iterable[Format]
    ) -> Generator[None, None, dict[Format, bytes]]:
        formats = frozenset(formats)
        calls.append((snapshot.timestamp, formats))
        return original(self, snapshot, formats)

    monkeypatch.setattr(Renderer, "steps", spy)
    return calls


@contextlib.asynccontextmanager
async def running(exposition: Exposition) -> AsyncIterator[Exposition]:
    task = asyncio.create_task(exposition.run())
    try:
        yield exposition
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def made(exposition: Exposition, t: float) -> set[Variant]:
    """The variants made for the snapshot of time t (empty while it is not the current one)."""
    current = exposition.current
    return set(current.bodies) if current is not None and current.snapshot.timestamp == t else set()


async def test_a_variant_nobody_asked_for_is_never_rendered(renders: list[tuple[float, frozenset[Format]]]) -> None:
    """Unscraped samples: nothing is rendered. The first ask renders that variant once, in the background."""
    async with running(Exposition(builders_for("native"))) as exposition:
        for t in range(3):
            exposition.update(sample(FIXED_TIME + t))
            await asyncio.sleep(0.01)
        assert renders == []
        body = await exposition.body(OM_GZIP)
    assert renders == [(FIXED_TIME + 2, {Format.OPENMETRICS})]
    assert body is not None
    expected = Renderer(builders_for("native")).render(sample(FIXED_TIME + 2), Format.OPENMETRICS)
    assert gzip.decompress(body) == expected


async def test_asked_variants_are_made_with_every_new_sample(renders: list[tuple[float, frozenset[Format]]]) -> None:
    """Once asked for, a variant is made at the end of each sampling cycle, so the next scrape just takes it."""
    async with running(Exposition(builders_for("native"))) as exposition:
        exposition.update(sample(FIXED_TIME))
        await exposition.body(OM_GZIP)
        await exposition.body(TEXT)
        renders.clear()
        for t in (1, 2, 3):
            exposition.update(sample(FIXED_TIME + t))
            await until(lambda t=t: bool(made(exposition, FIXED_TIME + t)))  # type: ignore[misc]
            assert made(exposition, FIXED_TIME + t) == {OM_GZIP, TEXT}  # only what was asked for is kept
        assert renders == [(FIXED_TIME + t, {Format.TEXT, Format.OPENMETRICS}) for t in (1, 2, 3)]
        # Scrapes of the made sample render nothing more.
        for _ in range(10):
            assert await exposition.body(OM_GZIP) is exposition.current.bodies[OM_GZIP]  # type: ignore[union-attr]
        assert len(renders) == 3


async def test_a_variant_unasked_for_a_while_is_no_longer_made(renders: list[tuple[float, frozenset[Format]]]) -> None:
    """A variant not asked for in `demand_seconds` stops being made; asking again brings it back."""
    clock = Clock()
    async with running(Exposition(builders_for("native"), demand_seconds=60, clock=clock)) as exposition:
        exposition.update(sample(FIXED_TIME))
        await exposition.body(TEXT)
        clock.now = 59
        exposition.update(sample(FIXED_TIME + 1))
        await until(lambda: TEXT in made(exposition, FIXED_TIME + 1))
        clock.now = 61
        exposition.update(sample(FIXED_TIME + 2))
        await until(lambda: exposition.current is not None and exposition.current.snapshot.timestamp == FIXED_TIME + 2)
        assert made(exposition, FIXED_TIME + 2) == set()
        assert await exposition.body(TEXT) is not None
    assert [t for t, _ in renders] == [FIXED_TIME, FIXED_TIME + 1, FIXED_TIME + 2]


async def test_a_failed_render_fails_its_scrapes_once_logged_and_the_next_sample_renders(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A builder that raises: that sample's scrapes get None at once (no retry per scrape), one error is logged
    however many samples fail, and the first sample that renders again is served."""
    calls = {"families": 0, "bad": True}

    def families(snapshot: Snapshot) -> Iterable[object]:
        calls["families"] += 1
        if calls["bad"]:
            raise RuntimeError("broken builder")
        return builders_for("native")[0].families(snapshot)

    async with running(Exposition([Builder(families)])) as exposition:  # type: ignore[arg-type]
        exposition.update(sample())
        assert await exposition.body(TEXT) is None
        for _ in range(5):
            assert await exposition.body(TEXT) is None and exposition.failing
        assert calls["families"] == 1
        exposition.update(sample(FIXED_TIME + 1))
        await until(lambda: calls["families"] == 2)
        assert await exposition.body(TEXT) is None
        calls["bad"] = False
        exposition.update(sample(FIXED_TIME + 2))
        await until(lambda: bool(made(exposition, FIXED_TIME + 2)))
        body = await exposition.body(TEXT)
        assert not exposition.failing
    assert body is not None and b"mig_instance_info{" in body
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "rendering the exposition failed" in errors[0].getMessage()


async def test_rendering_lets_the_event_loop_run_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building and filling a large exposition hands the loop back many times: requests are served in between."""
    monkeypatch.setattr(template, "STEP_LINES", 20)
    monkeypatch.setattr(template, "BUILD_LINES", 20)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with running(Exposition(builders_for("dcgm"))) as exposition:
        exposition.update(sample(scenario="dgx-h100"))
        task = asyncio.create_task(ticker())
        await exposition.body(TEXT)
        built = ticks
        exposition.update(sample(FIXED_TIME + 1, "dgx-h100"))
        await until(lambda: bool(made(exposition, FIXED_TIME + 1)))
        task.cancel()
    lines = (Renderer(builders_for("dcgm")).render(sample(scenario="dgx-h100"))).count(b"\n")
    assert built > lines // 20  # the first render: template building and filling
    assert ticks - built > lines // 40  # a later sample: filling only
