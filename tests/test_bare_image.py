"""`serve` and `doctor` run on a bare GPU image: only the packages it offers, the checkout on PYTHONPATH."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.bare_image import bare_image_env
from tests.support.nvml import FAKES
from tests.support.processes import ExporterProcess


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_bare_image_has_no_bcrypt(tmp_path: Path) -> None:
    """The stand-in image really refuses what the image lacks (bcrypt) and allows what it has."""
    env = bare_image_env()
    refused = run(["-c", "import bcrypt"], env)
    assert refused.returncode == 1 and "ModuleNotFoundError: No module named 'bcrypt'" in refused.stderr
    assert run(["-c", "import aiohttp, prometheus_client, yaml, grpc, google.protobuf, pynvml"], env).returncode == 0


@pytest.mark.integration
def test_serve_synthetic_runs_on_the_bare_image(tmp_path: Path) -> None:
    """`python -m exporter serve --source synthetic` serves metrics with only the bare image's packages."""
    env = bare_image_env()
    with ExporterProcess(["--source", "synthetic"], env=env, log_path=tmp_path / "log") as proc:
        assert 'mig_exporter_source_up{source="synthetic"} 1.0' in proc.metrics()
    assert "Traceback" not in proc.log()


@pytest.mark.integration
def test_serve_nvml_runs_on_the_bare_image(tmp_path: Path) -> None:
    """`serve --source nvml` (the fake pynvml standing in for the driver) runs with only the bare image's packages."""
    env = {**bare_image_env(extra_path=(FAKES,)), "FAKE_PYNVML_SCENARIO": "demo"}
    with ExporterProcess(["--source", "nvml", "--interval", "0.2"], env=env, log_path=tmp_path / "log") as proc:
        assert 'mig_exporter_source_up{source="nvml"} 1.0' in proc.metrics()


@pytest.mark.integration
def test_serve_without_a_usable_grpc_serves_everything_but_pods(tmp_path: Path) -> None:
    """Where grpc or protobuf cannot be imported, serve logs one warning at a kubelet socket and runs without pods."""
    env = bare_image_env(without=("grpc", "google"))
    kubelet = tmp_path / "kubelet.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(kubelet))
        args = ["--source", "synthetic", "--kubelet-socket", str(kubelet), "--kubelet-interval", "0.2"]
        with ExporterProcess(args, env=env, log_path=tmp_path / "log") as proc:
            assert 'mig_exporter_source_up{source="synthetic"} 1.0' in proc.metrics()
            time.sleep(1)  # several refresh intervals: the warning must not repeat
            assert "mig_instance_pod_info{" not in proc.metrics()
    log = proc.log()
    assert log.count("pod attribution is off: its gRPC client cannot be loaded (ModuleNotFoundError") == 1, log
    assert "Traceback" not in log


def test_doctor_runs_on_the_bare_image(tmp_path: Path) -> None:
    """`mig-exporter doctor` runs with only the bare image's packages and says what it found."""
    env = bare_image_env()
    result = run(["-m", "exporter", "doctor", "--source", "synthetic", "--kubelet-socket", ""], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "serve --source synthetic will publish" in result.stdout
    assert "Traceback" not in result.stderr


def test_basic_auth_without_bcrypt_is_one_line_exit_2(tmp_path: Path) -> None:
    """A web-config with basic_auth_users on an image without bcrypt ends with exit 2 and one line saying so."""
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: $2y$10$HPZdVEno3fy1ArJt9X/XVed4jYINqtm6o./U3Lh74LlgS60laJ7ce\n")
    env = bare_image_env()
    result = run(["-m", "exporter", "serve", "--source", "synthetic", "--web-config", str(web)], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "basic_auth_users: needs the bcrypt package" in lines[0], result.stderr
