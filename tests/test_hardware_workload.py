"""The hardware tests' workload and its driver, over a stand-in for torch (the real one runs on the GPU image)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.hardware.workload import Workload

TORCH_STAND_IN = '''
"""Just what tests/hardware/workload.py calls, doing nothing on no device."""
uint8, float16 = "uint8", "float16"


class _Tensor:
    def __matmul__(self, other):
        return self

    def clamp_(self, low, high):
        return self


class cuda:
    @staticmethod
    def is_available():
        return True

    @staticmethod
    def synchronize():
        return None


def zeros(*shape, **options):
    return _Tensor()


empty = randn = zeros
'''


def stand_in_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "torch.py").write_text(TORCH_STAND_IN)
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_workload_goes_through_its_phases(tmp_path: Path) -> None:
    """ready, then on `go` allocated and running, then it stops when its stdin closes."""
    workload = Workload("GPU-test", "--matmul", "--alloc-mib", "4", "--seconds", "30", env=stand_in_env(tmp_path))
    try:
        workload.expect("ready", 30)
        workload.send("go")
        workload.expect("allocated", 10)
        workload.expect("running", 10)
    finally:
        workload.stop()
    assert workload.proc.returncode == 0


def test_workload_without_torch_says_so(tmp_path: Path) -> None:
    """Without torch it prints why and exits 3; the driver does not wait for it."""
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")
    workload = Workload("GPU-test", env=env)
    assert not workload.wait_for("ready", 30)
    workload.stop()
    assert workload.proc.returncode == 3 and workload.seen[-1].startswith("error: torch is not importable")
