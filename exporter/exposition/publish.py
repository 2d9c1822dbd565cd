"""The bytes scrapes are served: each snapshot's exposition, made at the end of its sampling cycle.

Prometheus scrapes every 15-60 s while the exporter samples every second, so nearly every real scrape
is the first one of a new sample. A scrape therefore never renders: `Exposition.run`, a background
task, makes each new snapshot's bytes in every variant (format and encoding) asked for in the last
`demand_seconds`, then swaps them in whole, and a scrape only picks them up. A variant nobody asked for
costs nothing; the first request for one waits while the background task makes it, and from then on
it is made with every sample. Rendering and gzip yield to the event loop between slices of work of
well under a millisecond, so /healthz and concurrent scrapes never wait behind them. Gzip runs on the
loop, not in a worker thread: a thread handed the body every second costs more in hand-offs than the
slices do, and keeps an allocator arena of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from exporter.exposition.render import Renderer
from exporter.exposition.series import Builder
from exporter.exposition.template import Format
from exporter.model import Snapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

DEMAND_SECONDS = 300.0  # a variant unasked for this long is no longer made (Prometheus scrapes every <= 5 min)
# zlib's fastest level: made every second, the body is gzipped 15-60 times per scrape, and level 1
# takes half the time of the default 6 for about a quarter more bytes (measured on 64 GPUs x 7).
GZIP_LEVEL = 1
GZIP_SLICE = 1 << 16  # bytes compressed between two yields: about 0.2 ms at level 1


class Variant(NamedTuple):
    """What a scrape asks for: a format, gzipped or not."""

    format: Format
    gzip: bool


@dataclass(frozen=True, slots=True)
class Published:
    """One snapshot's exposition in the variants made for it."""

    snapshot: Snapshot
    bodies: Mapping[Variant, bytes]


def gzip_steps(body: bytes) -> Generator[None, None, bytes]:
    """`body` gzipped (no name, mtime 0), yielding after each GZIP_SLICE bytes."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16: a gzip header and trailer
    view = memoryview(body)
    parts = []
    for start in range(0, len(body), GZIP_SLICE):
        parts.append(compressor.compress(view[start : start + GZIP_SLICE]))
        yield
    parts.append(compressor.flush())
    return b"".join(parts)


async def _drive(steps: Generator[None, None, T]) -> T:
    """Run a generator of work slices, letting the event loop run between them."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result
        await asyncio.sleep(0)


class Exposition:
    """The latest exposition; subscribe `update` to the sampler and run `run` for the server's life."""

    def __init__(
        self,
        builders: Iterable[Builder],
        *,
        demand_seconds: float = DEMAND_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.renderer = Renderer(builders)
        self.demand_seconds = demand_seconds
        self._clock = clock
        self.current: Published | None = None
        self._latest: Snapshot | None = None
        self._failed: Snapshot | None = None  # the latest snapshot that could not be rendered
        self._asked: dict[Variant, float] = {}
        self._waiting: dict[Variant, asyncio.Future[bytes | None]] = {}
        self._wake = asyncio.Event()

    @property
    def failing(self) -> bool:
        """True while the latest snapshot could not be rendered (scrapes get the last bytes made, or none)."""
        return self._failed is not None and self._failed is self._latest

    def update(self, snapshot: Snapshot) -> None:
        """A new snapshot: the background task makes its bytes now, then scrapes get them."""
        self._latest = snapshot
        self._wake.set()

    async def body(self, variant: Variant) -> bytes | None:
        """The latest bytes in `variant`; None before the first sample, or when rendering it failed.

        Served at once when made; a variant not asked for lately waits while the background task makes it.
        """
        self._asked[variant] = self._clock()
        current = self.current
        if current is not None and (body := current.bodies.get(variant)) is not None:
            return body
        if self._latest is None or self.failing:
            return None
        waiter = self._waiting.get(variant)
        if waiter is None:
            waiter = self._waiting[variant] = asyncio.get_running_loop().create_future()
            self._wake.set()
        return await asyncio.shield(waiter)

    async def run(self) -> None:
        """Make the bytes of each new snapshot, and of each variant a scrape waits for, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            snapshot = self._latest
            if snapshot is None or snapshot is self._failed:
                self._release()
                continue
            try:
                await self._catch_up(snapshot)
            except Exception:  # serving goes on; the next snapshot is tried afresh
                if self._failed is None:  # logged when it starts failing, not for every sample
                    log.exception("rendering the exposition failed; scrapes get the last sample rendered")
                self._failed = snapshot
                self._release()
                continue
            if self._failed is not None:
                log.info("rendering the exposition works again")
                self._failed = None

    def _wanted(self) -> set[Variant]:
        now = self._clock()
        self._asked = {v: at for v, at in self._asked.items() if now - at < self.demand_seconds}
        return set(self._asked) | set(self._waiting)

    async def _catch_up(self, snapshot: Snapshot) -> None:
        current = self.current
        have = current.bodies if current is not None and current.snapshot is snapshot else {}
        wanted = self._wanted()
        missing = [v for v in wanted if v not in have]
        if current is None or current.snapshot is not snapshot or missing:
            made = await self._make(snapshot, missing, have)
            bodies = {**have, **{v: body for v, body in made.items() if v in wanted}}
            self.current = Published(snapshot, bodies)
        self._release()

    async def _make(
        self, snapshot: Snapshot, variants: list[Variant], have: Mapping[Variant, bytes]
    ) -> dict[Variant, bytes]:
        """Each variant's body; the plain body of each format gzipped comes along."""
        formats = {v.format for v in variants if Variant(v.format, False) not in have}
        made: dict[Variant, bytes] = dict(have)
        if formats:
            plain = await _drive(self.renderer.steps(snapshot, formats))
            made.update((Variant(fmt, False), body) for fmt, body in plain.items())
        for variant in variants:
            if variant.gzip:
                plain_body = made[Variant(variant.format, False)]
                made[variant] = await _drive(gzip_steps(plain_body))
        return made

    def _release(self) -> None:
        """Answer the scrapes waiting for a variant now made; with None all of them while rendering fails."""
        bodies = self.current.bodies if self.current is not None else {}
        failing = self.failing
        for variant, waiter in list(self._waiting.items()):
            body = bodies.get(variant)
            if body is not None or failing:
                del self._waiting[variant]
                if not waiter.done():
                    waiter.set_result(body)
