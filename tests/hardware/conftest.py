"""Hardware tests: run with `-m gpu` (the default run leaves them out), on a machine whose NVML finds a GPU.

Elsewhere every test is skipped with the reason. They only read: they never change MIG mode or
instances, never reset a GPU, and the only load they put on it is tests/hardware/workload.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def nvml() -> Iterator[ModuleType]:
    """The `pynvml` module, initialised; skips the test where NVML finds no GPU."""
    try:
        pynvml = importlib.import_module("pynvml")
    except ImportError as exc:
        pytest.skip(f"nvidia-ml-py is not installed ({exc})")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"NVML finds no GPU here: nvmlInit failed: {exc}")
    try:
        if int(pynvml.nvmlDeviceGetCount()) == 0:
            pytest.skip("NVML finds no GPU here (device count 0)")
        yield pynvml
    finally:
        pynvml.nvmlShutdown()
