"""`mig-exporter doctor` over the fakes, in every degraded mode they model: what it says and how it exits."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from exporter.cli.doctor import diagnose, render_text
from exporter.cli.main import main
from exporter.cli.settings import resolve
from exporter.model import Topology
from exporter.sources import nvml as nvml_source
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.fake_dcgm import FAKE_DCGM_DIR, fake_bindings, hostengine
from tests.support.kubelet import FakeKubelet, dgx_pods, short_socket_dir
from tests.support.nvml import load_fake_pynvml
from tests.test_cli import run_cli

DCGM_MODULES = ("dcgm_structs", "dcgm_fields", "dcgm_agent", "dcgmvalue")
FAKE_DCGM = ("--dcgm-bindings", str(FAKE_DCGM_DIR))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MIG_EXPORTER_* setting from the caller's environment changes what doctor checks."""
    for name in [n for n in os.environ if n.startswith("MIG_EXPORTER_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The fake pynvml as `pynvml`, over a dgx-h100 node, privileged."""
    fake = load_fake_pynvml()
    fake.install(Simulator(load("dgx-h100")))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    yield fake
    fake.release_all()


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without the NVIDIA driver: nvmlInit fails with LibraryNotFound."""
    monkeypatch.setitem(sys.modules, "pynvml", load_fake_pynvml())


@pytest.fixture
def no_dcgm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without DCGM's bindings: importing them fails (whatever earlier tests imported)."""
    for name in DCGM_MODULES:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def engine() -> Iterator[Any]:
    """A fake host engine on localhost:5555 serving dgx-h100, for `--dcgm-bindings` the fake bindings."""
    fake_bindings()
    module = hostengine()
    eng = module.FakeHostEngine(Simulator(load("dgx-h100")))
    module.install(eng)
    yield eng
    module.install(None)


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `mig-exporter doctor` in-process with a short interval; its exit code and standard output."""
    code = main(["doctor", "--interval", "0.2", "--kubelet-socket", "", *args])
    return code, capsys.readouterr().out


def doctor_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out = doctor(capsys, *args, "--output", "json")
    return code, json.loads(out)


REMAPPED = ("remapped_rows_correctable", "remapped_rows_uncorrectable", "row_remap_failure")


def checks(doc: dict[str, Any], level: str) -> list[str]:
    """`subject: message` of every check at one level."""
    return [f"{c['subject']}: {c['message']}" for c in doc["checks"] if c["level"] == level]


def absent(doc: dict[str, Any], gpu: int) -> dict[str, str]:
    """What the GPU's series lack, and why."""
    return {a["what"]: a["reason"] for a in doc["gpus"][gpu]["absent"]}


def test_doctor_nvml_healthy_node(capsys: pytest.CaptureFixture[str], nvml: ModuleType, no_dcgm: None) -> None:
    """A privileged Hopper node: versions, MIG and GPM per GPU, every GPU published, exit 0."""
    code, out = doctor(capsys, "--source", "nvml")
    assert code == 0, out
    assert "serve --source nvml would use nvml" in out
    assert "nvidia-ml-py 13.615.71; NVML 12.550.127.05, driver 550.127.05, CUDA 12.4" in out
    assert "ok    GPU 0              NVIDIA H100 80GB HBM3 (GPU-" in out
    assert ", MIG enabled, 7 GPU instances, GPM, GPU-instance APIs permitted\n" in out
    assert "  GPU 0  MIG enabled, 7 GPU instances, 7 compute instances: 140 series\n" in out
    assert "  GPU 7  MIG disabled: 26 series\n" in out
    assert "result: ok" in out and "(exit 0)" in out
    code, doc = doctor_json(capsys, "--source", "nvml")
    assert code == 0 and doc["ok"] and doc["source"] == {"requested": "nvml", "chosen": "nvml"}
    gpu1 = doc["gpus"][1]
    assert gpu1["series"]["mig_instance_gr_engine_active_ratio"] == 2  # activity after the second reading
    assert gpu1["series"]["mig_compute_instance_info"] == 2
    assert absent(doc, 1) == dict.fromkeys(REMAPPED, "not_supported")  # NVML refuses them with MIG on
    assert absent(doc, 7) == {}
    assert doc["gpus"][7]["series"]["mig_gpu_gr_engine_active_ratio"] == 1
    assert checks(doc, "fail") == [] and checks(doc, "warn") == []


def test_doctor_nvml_unprivileged(capsys: pytest.CaptureFixture[str], nvml: ModuleType, no_dcgm: None) -> None:
    """Unprivileged: serve works (exit 0) with placements and the whole-GPU total absent, and the fix named."""
    nvml.driver().privileged = False
    code, doc = doctor_json(capsys, "--source", "nvml")
    assert code == 0 and doc["ok"]
    warnings = checks(doc, "warn")
    assert any(w.startswith("GPU 0: GPU-instance APIs refused (no_permission)") for w in warnings), warnings
    assert any("mig_gpu_memory_total_bytes absent" in w for w in warnings), warnings
    assert absent(doc, 0) == {
        "memory_total (whole GPU)": "no_permission",
        "memory_reserved": "no_permission",
        "placement_start": "no_permission",
        **dict.fromkeys(REMAPPED, "not_supported"),
    }
    assert absent(doc, 7) == {}  # MIG disabled: nothing is privileged
    fixes = {a["fix"] for a in doc["gpus"][0]["absent"] if a["reason"] == "no_permission"}
    assert all("CAP_SYS_ADMIN" in fix for fix in fixes)


def test_doctor_nvml_a100_without_gpm(capsys: pytest.CaptureFixture[str], nvml: ModuleType, no_dcgm: None) -> None:
    """An A100 has no GPM: activity absent (no_gpm) with the advice to use DCGM, still exit 0."""
    nvml.set_model(1, "NVIDIA A100-SXM4-80GB", gpm=False)
    code, out = doctor(capsys, "--source", "nvml")
    assert code == 0, out
    assert "warn  GPU 1              no GPM (older than Hopper)" in out
    assert "absent gr_engine_active: no_gpm" in out and "use --source dcgm for activity" in out
    assert "result: ok (1 warning)" in out


def test_doctor_nvml_gpu_lost_before_start_fails(
    capsys: pytest.CaptureFixture[str], nvml: ModuleType, no_dcgm: None
) -> None:
    """A GPU NVML counts but cannot read fails the check (exit 1), naming the GPU and the error."""
    nvml.fail_gpu(2)
    code, out = doctor(capsys, "--source", "nvml")
    assert code == 1
    assert (
        "fail  GPU 2              NVML counts it but cannot read it, so serve leaves it out: GPU 2: GPU is lost" in out
    )
    assert "result: FAIL" in out and "(exit 1)" in out


async def test_doctor_nvml_gpu_lost_while_sampling_fails(nvml: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU lost after discovery is stale: the check fails naming the error and what to look for."""

    class LosesGpu2(nvml_source.NvmlSource):
        async def discover(self) -> Topology:
            topology = await super().discover()
            nvml.fail_gpu(2)  # falls off the bus right after the layout was read
            return topology

    monkeypatch.setattr(nvml_source, "NvmlSource", LosesGpu2)
    report = await diagnose(resolve({"source": "nvml", "interval": "0.2", "kubelet_socket": ""}, environ={}))
    out = render_text(report)
    assert report.exit_code == 1
    assert "fail  GPU 2              GPU 2: GPU is lost" in out and "Xid 79" in out
    assert "absent every value (the GPU is stale)" in out


def test_doctor_without_driver_fails(capsys: pytest.CaptureFixture[str], no_nvml: None, no_dcgm: None) -> None:
    """No NVIDIA driver: `--source nvml` cannot start (exit 1), with the install hint."""
    code, out = doctor(capsys, "--source", "nvml")
    assert code == 1
    assert "fail  library            NVML could not be loaded: nvmlInit failed: NVML Shared Library Not Found" in out
    assert "fail  --source nvml      cannot start: NVML could not be opened" in out
    assert "install the NVIDIA driver" in out


def test_doctor_auto_with_nothing_names_synthetic(
    capsys: pytest.CaptureFixture[str], no_nvml: None, no_dcgm: None
) -> None:
    """`--source auto` with neither DCGM nor NVML: both failures and the hint to use --source synthetic."""
    code, doc = doctor_json(capsys)
    assert code == 1 and doc["source"] == {"requested": "auto", "chosen": None}
    fails = checks(doc, "fail")
    assert any(f.startswith("bindings: DCGM Python bindings not found") for f in fails), fails
    assert any(f.startswith("library: NVML could not be loaded") for f in fails), fails
    assert "--source synthetic" in doc["checks"][-1]["fix"]


def test_doctor_dcgm_healthy(capsys: pytest.CaptureFixture[str], engine: Any, no_nvml: None) -> None:
    """DCGM: bindings and library version, host engine, profiling module loaded, each GPU watched; exit 0."""
    code, out = doctor(capsys, "--source", "dcgm", *FAKE_DCGM)
    assert code == 0, out
    assert f"ok    bindings           {FAKE_DCGM_DIR} (they load libdcgm.so.4)" in out
    assert "ok    library            libdcgm 4.6.0" in out
    assert "ok    host engine        connected to the host engine at localhost:5555" in out
    assert "ok    profiling module   loaded" in out
    assert "ok    GPU 4              watching activity and memory on its GPU instances" in out
    assert "info  library            NVML could not be loaded" in out  # not the chosen source: information
    assert "absent placement_start: not_reported_by_dcgm" in out


def test_doctor_auto_prefers_dcgm(capsys: pytest.CaptureFixture[str], engine: Any, nvml: ModuleType) -> None:
    """With both available, auto picks DCGM as serve does; NVML's facts are still listed."""
    nvml.set_model(1, "NVIDIA A100-SXM4-80GB", gpm=False)
    code, doc = doctor_json(capsys, *FAKE_DCGM)
    assert code == 0 and doc["source"]["chosen"] == "dcgm"
    assert any(c.startswith("GPU 1: no GPM") for c in checks(doc, "info"))  # NVML's warning, as information
    assert doc["gpus"][1]["series"]["mig_instance_gr_engine_active_ratio"] == 2  # DCGM reads it anyway


def test_doctor_dcgm_bindings_missing(capsys: pytest.CaptureFixture[str], no_nvml: None, no_dcgm: None) -> None:
    """`--source dcgm` without DCGM's bindings fails, naming where it looked and the flag to point at them."""
    code, out = doctor(capsys, "--source", "dcgm")
    assert code == 1
    assert "fail  bindings           DCGM Python bindings not found" in out and "--dcgm-bindings" in out


def test_doctor_dcgm_host_engine_unreachable(capsys: pytest.CaptureFixture[str], engine: Any, no_nvml: None) -> None:
    """No host engine at the address: fail with the address and how to point at one."""
    code, out = doctor(capsys, "--source", "dcgm", *FAKE_DCGM, "--dcgm-host", "localhost:5599")
    assert code == 1
    assert "fail  host engine        cannot connect to the DCGM host engine at localhost:5599" in out
    assert "--dcgm-host embedded" in out


def test_doctor_dcgm_profiling_module_not_loaded(
    capsys: pytest.CaptureFixture[str], engine: Any, no_nvml: None
) -> None:
    """The profiling module failed to load: activity absent on every GPU, the check fails with the fix."""
    engine.profiling = False
    engine.profiling_error = fake_bindings().structs.DCGM_ST_MODULE_NOT_LOADED
    code, doc = doctor_json(capsys, "--source", "dcgm", *FAKE_DCGM)
    assert code == 1
    assert "profiling module: failed" in checks(doc, "warn")
    fails = checks(doc, "fail")
    assert "GPU 0: profiling fields cannot be watched (module_not_loaded): no activity series" in fails
    assert absent(doc, 0)["gr_engine_active"] == "module_not_loaded"
    assert doc["gpus"][0]["series"]["mig_instance_memory_used_bytes"] == 7  # memory is still watched


def test_doctor_dcgm_lost_gpu(capsys: pytest.CaptureFixture[str], engine: Any, no_nvml: None) -> None:
    """A GPU DCGM keeps listing but cannot watch fails the check; DCGM's view of it is shown."""
    engine.lose(3, listed=True)
    code, doc = doctor_json(capsys, "--source", "dcgm", *FAKE_DCGM)
    assert code == 1
    assert any(f.startswith("GPU 3: GPU 3: DCGM cannot watch it") for f in checks(doc, "fail")), doc["checks"]
    assert doc["gpus"][3]["series"] == {
        "mig_gpu_info": 1,
        "mig_instance_info": 4,
        "mig_instance_compute_slices": 4,
        "mig_instance_memory_slices": 4,
        "mig_compute_instance_info": 4,
    }
    assert absent(doc, 3) == {"every value (the GPU is stale)": "sample_failed"}
    assert absent(doc, 2) == {
        "placement_start": "not_reported_by_dcgm",
        "gpu_util": "not_supported",  # whole-GPU utilization: not with MIG on
        "memory_copy_util": "not_supported",
    }


def test_doctor_dcgm_gpu_dropped_from_the_list(capsys: pytest.CaptureFixture[str], engine: Any, no_nvml: None) -> None:
    """A GPU DCGM knows but no longer lists as supported is named."""
    engine.lose(5)
    code, doc = doctor_json(capsys, "--source", "dcgm", *FAKE_DCGM)
    assert "GPU ID 5: DCGM knows GPU ID 5 but does not list it as supported (lost, or not supported)" in checks(
        doc, "warn"
    )
    assert code == 0 and len(doc["gpus"]) == 7  # the seven DCGM can read


def test_doctor_kubelet(capsys: pytest.CaptureFixture[str], nvml: ModuleType, no_dcgm: None) -> None:
    """No socket is information; a live kubelet is listed with the GPU allocations it reports."""
    code = main(["doctor", "--source", "nvml", "--interval", "0.2", "--kubelet-socket", "/nonexistent/kubelet.sock"])
    out = capsys.readouterr().out
    assert code == 0 and "info  kubelet            no socket at /nonexistent/kubelet.sock" in out
    socket_path = os.path.join(short_socket_dir(), "kubelet.sock")
    topology = Simulator(load("dgx-h100")).topology()
    with FakeKubelet(socket_path, dgx_pods(topology)):
        code = main(["doctor", "--source", "nvml", "--interval", "0.2", "--kubelet-socket", socket_path])
    out = capsys.readouterr().out
    assert code == 0 and f"ok    kubelet            {socket_path}: 14 GPU allocations to containers listed" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "gpu"], "--source: invalid value 'gpu': expected one of auto, dcgm, nvml, synthetic"),
        (["--output", "xml"], "argument --output: invalid choice: 'xml'"),
        (["--interval", "0"], "--interval: invalid value '0': must be between 0.05 and 3600 seconds"),
        (["--source", "synthetic", "--scenario", "nope"], "nope"),
    ],
)
def test_doctor_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    """A bad flag or scenario ends doctor with exit 2 and one line naming it."""
    result = run_cli("doctor", *args)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
