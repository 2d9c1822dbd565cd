"""`mig-exporter serve --source dcgm` as a real process over the fake bindings, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli.settings import ConfigError, resolve
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.fake_dcgm import FAKE_DCGM_DIR
from tests.support.processes import ExporterProcess, wait_until
from tests.test_cli import run_cli

DCGM_NAMES = (
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_SM_ACTIVE",
    "DCGM_FI_PROF_SM_OCCUPANCY",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
)


def samples(text: str) -> dict[str, list[dict[str, str]]]:
    """{sample name: [labels]} of an exposition."""
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s.labels)
    return out


@pytest.mark.integration
def test_serve_dcgm_source_end_to_end_over_fake_bindings(tmp_path: Path) -> None:
    """A real `serve --source dcgm` process on the fake bindings serves the dgx-h100 node once watches update."""
    sim = Simulator(load("dgx-h100"))
    args = ["--source", "dcgm", "--dcgm-bindings", str(FAKE_DCGM_DIR), "--interval", "0.5", "--names", "dcgm"]
    with ExporterProcess(args, env={"FAKE_DCGM_SCENARIO": "dgx-h100"}, log_path=tmp_path / "exporter.log") as proc:

        def all_instances_active() -> str | None:
            text = proc.metrics()
            return text if len(samples(text).get("mig_instance_gr_engine_active_ratio", ())) == 24 else None

        text = wait_until(all_instances_active, 20, "24 GPU-instance activity series from the dcgm source")
    s = samples(text)
    assert s["mig_exporter_build_info"][0]["source"] == "dcgm"
    assert 'mig_exporter_source_up{source="dcgm"} 1.0' in text
    assert len(s["mig_compute_instance_info"]) == len(list(sim.topology().iter_compute_instances()))
    assert {lbl["mig_uuid"] for lbl in s["mig_compute_instance_info"]} == {
        c.mig_uuid for _, _, c in sim.topology().iter_compute_instances()
    }
    assert len(s["mig_gpu_power_watts"]) == 8
    assert {lbl["placement_start"] for lbl in s["mig_instance_info"]} == {""}  # DCGM reports no placements
    assert {(lbl["gpu"], lbl["GPU_I_ID"]) for lbl in s["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] if "GPU_I_ID" in lbl} == {
        (str(g.index), str(i.gi)) for g, i in sim.topology().iter_instances()
    }


@pytest.mark.integration
def test_serve_synthetic_with_dcgm_names(tmp_path: Path) -> None:
    """`--names dcgm` on the synthetic source serves dcgm-exporter's names beside the native ones."""
    args = ["--source", "synthetic", "--scenario", "dgx-h100", "--names", "dcgm"]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as proc:
        s = samples(proc.metrics())
    assert "mig_instance_gr_engine_active_ratio" in s
    for name in DCGM_NAMES:
        assert name in s, name
    mig = [lbl for lbl in s["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] if lbl["gpu"] != "7"]
    assert len(mig) == 24 and all({"GPU_I_PROFILE", "GPU_I_ID"} <= set(lbl) for lbl in mig)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dcgm-bindings", "/nonexistent/bindings"], "/nonexistent/bindings: no DCGM Python bindings there"),
        (["--dcgm-bindings", str(FAKE_DCGM_DIR), "--dcgm-host", "127.0.0.1:5599"], "cannot connect to the DCGM host"),
        (["--dcgm-host", "localhost:port"], "--dcgm-host: invalid value 'localhost:port'"),
        (["--names", "prometheus"], "--names: invalid value 'prometheus': expected one of native, dcgm"),
    ],
)
def test_dcgm_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    """Missing bindings, an unreachable engine or a bad DCGM flag end with exit 2 and one line."""
    result = run_cli("serve", "--source", "dcgm", "--listen", "127.0.0.1:1", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_dcgm_host_accepts_embedded_and_a_bare_host() -> None:
    """`--dcgm-host` takes `embedded`, HOST:PORT, or a bare host meaning port 5555."""
    assert resolve({"dcgm_host": "embedded"}, environ={}).dcgm_host == "embedded"
    assert resolve({"dcgm_host": "10.0.0.7"}, environ={}).dcgm_host == "10.0.0.7:5555"
    assert resolve({}, environ={"MIG_EXPORTER_DCGM_HOST": "[::1]:5556"}).dcgm_host == "[::1]:5556"
    assert resolve({}, environ={}).dcgm_host == "localhost:5555"
    with pytest.raises(ConfigError, match="MIG_EXPORTER_NAMES: invalid value"):
        resolve({}, environ={"MIG_EXPORTER_NAMES": "both"})
