"""`mig-exporter serve --source nvml` as a real process: over the fake pynvml, and on a machine without a driver."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nvml import FAKES
from tests.support.processes import ExporterProcess, wait_until

ROOT = Path(__file__).resolve().parent.parent


def fake_env(**extra: str) -> dict[str, str]:
    """An environment whose `import pynvml` finds the fake first."""
    return {"PYTHONPATH": os.pathsep.join([str(FAKES), str(ROOT)]), **extra}


def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--listen", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def series(text: str, name: str) -> dict[str, float]:
    """Samples of one metric family in a text exposition: labels -> value."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


@pytest.mark.integration
def test_nvml_serve_end_to_end_over_fake(tmp_path: Path) -> None:
    """A real `serve --source nvml` process over the fake dgx-h100 serves every instance's activity and memory."""
    env = fake_env(FAKE_PYNVML_SCENARIO="dgx-h100")
    with ExporterProcess(["--source", "nvml", "--interval", "0.3"], env=env, log_path=tmp_path / "log") as exporter:

        def complete() -> str | None:
            text = exporter.metrics()
            return text if len(series(text, "mig_instance_gr_engine_active_ratio")) == 24 else None

        text = wait_until(complete, 20, "GPM ratios for all 24 GPU instances")
    assert series(text, "mig_exporter_build_info")
    assert 'source="nvml"' in next(iter(series(text, "mig_exporter_build_info")))
    assert series(text, "mig_exporter_source_up") == {'{source="nvml"}': 1.0}
    assert len(series(text, "mig_gpu_info")) == 8
    assert len(series(text, "mig_instance_info")) == 24
    assert len(series(text, "mig_compute_instance_info")) == 28
    assert len(series(text, "mig_compute_instance_gr_engine_active_ratio")) == 28
    assert len(series(text, "mig_instance_memory_used_bytes")) == 24
    assert list(series(text, "mig_gpu_gr_engine_active_ratio")) == ['{gpu="7",uuid="' + uuid_of(text, 7) + '"}']
    assert series(text, "mig_gpu_gr_engine_active_ratio")[f'{{gpu="7",uuid="{uuid_of(text, 7)}"}}'] == pytest.approx(
        0.65, abs=0.01
    )
    ratios = series(text, "mig_instance_gr_engine_active_ratio")
    assert ratios['{gi="1",gpu="1",profile="3g.40gb"}'] == pytest.approx(0.7, abs=0.01)
    assert ratios['{gi="2",gpu="1",profile="3g.40gb"}'] == 0.0
    assert 'placement_start="4"' in text  # privileged: placements from the GI APIs


def uuid_of(text: str, gpu: int) -> str:
    m = re.search(rf'mig_gpu_info\{{[^}}]*gpu="{gpu}"[^}}]*uuid="([^"]+)"', text)
    assert m, text
    return m.group(1)


def test_nvml_serve_without_driver_exits_2() -> None:
    """With no NVIDIA driver (the fake with no scenario), `serve --source nvml` exits 2 with one line."""
    result = serve("--source", "nvml", env=fake_env())
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "mig-exporter: error: NVML could not be loaded: nvmlInit failed: NVML Shared Library Not Found"
    ]


def test_nvml_auto_without_driver_names_synthetic() -> None:
    """With no NVIDIA driver, `serve --source auto` exits 2 with one line that names --source synthetic."""
    result = serve("--source", "auto", env=fake_env())
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert "nvml: NVML could not be loaded" in lines[0] and "--source synthetic" in lines[0]


def _driver_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_driver_present(), reason="this machine has the NVIDIA driver library")
def test_nvml_serve_with_real_pynvml_without_driver_exits_2() -> None:
    """The real nvidia-ml-py on a machine without libnvidia-ml gives the same one-line exit 2."""
    pytest.importorskip("pynvml")
    result = serve("--source", "nvml", env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "NVML could not be loaded: nvmlInit failed" in result.stderr
