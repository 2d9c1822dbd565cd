"""Driver calls in their own daemon threads: hung calls neither starve the others nor block exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from exporter.sources.driver_threads import DaemonThreadExecutor

HUNG_CALLS_THEN_EXIT = textwrap.dedent(
    """
    import asyncio, threading, time
    from exporter.sources.driver_threads import DaemonThreadExecutor

    forever = threading.Event()

    async def main():
        asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
        hung = [asyncio.ensure_future(asyncio.to_thread(forever.wait)) for _ in range(40)]
        await asyncio.sleep(0.2)
        print(await asyncio.wait_for(asyncio.to_thread(lambda: "answered"), 5), flush=True)
        for task in hung:
            task.cancel()

    asyncio.run(main())
    print("exited", flush=True)
    """
)


def test_hung_calls_do_not_starve_others_or_block_exit() -> None:
    """With 40 calls hung in the driver, another call still answers and the process still exits at once."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", HUNG_CALLS_THEN_EXIT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["answered", "exited"]
    assert time.monotonic() - started < 30  # a pool would hang here forever: 40 workers stuck, joined at exit


def test_results_and_exceptions_reach_the_caller() -> None:
    """A call's value and its exception come back through the future, as from a thread pool."""
    executor = DaemonThreadExecutor()
    assert executor.submit(lambda x: x * 2, 21).result(timeout=5) == 42
    with pytest.raises(ZeroDivisionError):
        executor.submit(lambda: 1 / 0).result(timeout=5)


def test_no_calls_after_shutdown() -> None:
    """After shutdown, new calls are refused, like any executor's."""
    executor = DaemonThreadExecutor()
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(print)
