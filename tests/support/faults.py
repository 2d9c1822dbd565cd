"""A source wrapper that injects faults per GPU: hangs, errors, crashes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from exporter.model import Gpu, GpuSample, Topology
from exporter.sources.base import Source


class FaultySource:
    """Delegates to `inner`, except where a fault is set for a GPU (or for discovery)."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.name = inner.name
        self.hang: set[int] = set()  # GPUs whose sample never returns
        self.block: set[int] = set()  # GPUs whose sample blocks a worker thread, as a hung driver call does
        self.unblock = threading.Event()  # set it to let blocked calls return
        self.raise_for: dict[int, Callable[[], BaseException]] = {}  # GPU -> exception factory
        self.discover_error: Callable[[], BaseException] | None = None
        self.block_discovery = False  # discovery blocks a worker thread until `unblock` is set
        self.sample_calls: dict[int, int] = {}
        self.discover_calls = 0
        self.closed = False

    async def discover(self) -> Topology:
        self.discover_calls += 1
        if self.discover_error is not None:
            raise self.discover_error()
        if self.block_discovery:
            await asyncio.to_thread(self.unblock.wait)
        return await self.inner.discover()

    async def sample(self, gpu: Gpu) -> GpuSample:
        self.sample_calls[gpu.index] = self.sample_calls.get(gpu.index, 0) + 1
        if gpu.index in self.hang:
            await asyncio.Event().wait()
        if gpu.index in self.block:
            await asyncio.to_thread(self.unblock.wait)
        if gpu.index in self.raise_for:
            raise self.raise_for[gpu.index]()
        return await self.inner.sample(gpu)

    async def close(self) -> None:
        self.closed = True
        await self.inner.close()
