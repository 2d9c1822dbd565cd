"""An executor that runs each blocking driver call in its own daemon thread.

Why not asyncio's default ThreadPoolExecutor: a driver call (NVML, DCGM) can hang forever. In a
pool, each hung call holds a worker for good, so a few hung GPUs starve every other GPU's calls;
and Python joins pool threads at exit, so one hung call keeps the process alive after SIGTERM.
Here a hung call holds only its own thread, and daemon threads never block exit. The sampler
keeps at most one call in flight per GPU, which bounds the number of threads.

Sources that call a driver await `in_driver_thread`; nothing else in the process shares these threads.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class DaemonThreadExecutor(ThreadPoolExecutor):
    """Each submitted call runs at once in a new daemon thread; shutdown never waits for them.

    A ThreadPoolExecutor only by type (asyncio's set_default_executor requires one): its pool never
    starts a worker, since submit and shutdown are replaced.
    """

    def __init__(self, name: str = "driver-call") -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._name = name
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting coroutine, as a pool would
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name=f"{self._name}-{next(self._counter)}", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls. Never joins: a thread stuck in the driver must not keep the process alive."""
        with self._lock:
            self._closed = True


_DRIVER_CALLS = DaemonThreadExecutor()


async def in_driver_thread(fn: Callable[[], T]) -> T:
    """Run a blocking driver call in its own daemon thread and await its result."""
    return await asyncio.get_running_loop().run_in_executor(_DRIVER_CALLS, fn)
