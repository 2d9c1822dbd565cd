"""bench/gpu_check.sh end to end where no GPU can be used: over the fake pynvml, and on a machine without a GPU.

Both run with only the packages a bare GPU image offers, so the script is known to run there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.bare_image import ROOT, bare_image_env
from tests.support.nvml import FAKES

SCRIPT = ROOT / "bench" / "gpu_check.sh"
FILES = ("environment.txt", "doctor.txt", "doctor.json", "hardware.txt", "hardware.xml", "serve.log", "summary.json")


def gpu_check(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**env, "GPU_CHECK_SERVE_SECONDS": "4", "PYTHON": __import__("sys").executable}
    return subprocess.run([str(SCRIPT), str(out)], capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.integration
def test_gpu_check_over_the_fake_driver(tmp_path: Path) -> None:
    """On a (simulated) GPU node it runs every step, writes what it saw and passes what it can check."""
    env = {**bare_image_env(extra_path=(FAKES,)), "FAKE_PYNVML_SCENARIO": "dgx-h100"}
    result = gpu_check(tmp_path / "out", env)
    out = tmp_path / "out"
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gpu_check: 8 GPU(s); 0 check(s) failed;")
    assert "ok    doctor: result: ok: serve --source nvml works on this node (exit 0)" in lines
    assert any(line.startswith("ok    hardware tests: 4 passed, 2 skipped") for line in lines), lines
    assert any(line.startswith("ok    serve --source nvml: ") and "0 failed, 0 unparsable" in line for line in lines)
    assert any(line.startswith("skip  activity under load: not measured") and "torch" in line for line in lines)
    for name in FILES:
        assert (out / name).is_file(), name
    assert json.loads((out / "doctor.json").read_text())["source"]["chosen"] == "nvml"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["facts"]["load_target"]["series"].startswith("mig_compute_instance")
    scrapes = sorted((out / "scrapes").glob("*.prom"))
    assert len(scrapes) >= 4
    names = {f.name for f in text_string_to_metric_families(scrapes[-1].read_text())}
    assert "mig_instance_gr_engine_active_ratio" in names
    assert (out / "activity.csv").read_text().startswith("seconds,phase,gr_engine_active\n")


@pytest.mark.integration
def test_gpu_check_without_a_gpu_says_so_and_finishes(tmp_path: Path) -> None:
    """Without a GPU it says so first, still runs every step and writes every file, and exits 3."""
    result = gpu_check(tmp_path / "out", bare_image_env())
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gpu_check: no NVIDIA GPU visible to NVML; 0 check(s) failed;")
    assert "skip  NVML: no GPU: nvmlInit failed: NVML Shared Library Not Found" in lines
    assert any(line.startswith("skip  hardware tests: 6 skipped") for line in lines), lines
    for name in FILES:
        assert (tmp_path / "out" / name).is_file(), name


def test_gpu_check_needs_its_folder() -> None:
    """Without the output folder it prints its usage and exits 2."""
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage: bench/gpu_check.sh OUT_DIR" in result.stderr
