"""`mig-exporter plan`: exit codes, the JSON shapes, the text slice map and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cli.main import main


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_fitting_layout_prints_the_slice_map_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """A layout that fits shows both slice rows, every instance's start, used and free slices, and what still fits."""
    code, out, _ = plan(capsys, "3g.40gb", "2g.20gb", "1g.10gb")
    assert code == 0
    assert out.startswith("3g.40gb + 2g.20gb + 1g.10gb fits H100 80GB (h100-80gb)\n")
    compute = next(line for line in out.splitlines() if line.strip().startswith("compute"))
    memory = next(line for line in out.splitlines() if line.strip().startswith("memory"))
    assert compute.count("[") == 3 and memory.count("[") == 3
    assert "3g.40gb      start 4  size 4" in out
    assert "used: 6/7 compute, 7/8 memory slices" in out
    assert "free: 1/7 compute and 1/8 memory slices; still fits: 1g.10gb, 1g.10gb+me" in out


def test_json_of_a_fitting_layout_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON output carries gpu, fits, instances (profile, start, size, slices), free and reason."""
    code, out, _ = plan(capsys, "4g.40gb", "1g.10gb", "--output", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc == {
        "gpu": "h100-80gb",
        "fits": True,
        "instances": [
            {"profile": "4g.40gb", "start": 0, "size": 4, "compute_slices": 4, "memory_slices": 4},
            {"profile": "1g.10gb", "start": 6, "size": 1, "compute_slices": 1, "memory_slices": 1},
        ],
        "free": {
            "compute_slices": 2,
            "memory_slices": 3,
            "memory_runs": [{"start": 4, "size": 2}, {"start": 7, "size": 1}],
            "still_fits": ["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb"],
        },
        "reason": None,
    }


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["4g.40gb", "4g.40gb"], "2 x 4g.40gb exceeds its maximum of 1 per GPU"),
        (["7g.80gb", "1g.10gb"], "needs 8 compute slices, h100-80gb has 7"),
        (["4x1g.20gb", "1g.10gb"], "needs 9 memory slices, h100-80gb has 8"),
        (["--gpu", "a100-40gb", "1g.5gb+me", "1g.5gb+me"], "2 x 1g.5gb+me exceeds its maximum of 1 per GPU"),
    ],
)
def test_a_layout_that_does_not_fit_exits_1_with_the_rule(
    capsys: pytest.CaptureFixture[str], args: list[str], reason: str
) -> None:
    """A layout that cannot fit exits 1 and says which rule breaks, in text and in JSON."""
    code, out, _ = plan(capsys, *args)
    assert code == 1
    assert out.strip().endswith(f"does not fit {'a100-40gb' if 'a100-40gb' in args else 'h100-80gb'}: {reason}")
    code, out, _ = plan(capsys, *args, "--output", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["fits"] is False and doc["instances"] == [] and doc["free"] is None and doc["reason"] == reason


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["3g.41gb"], "unknown MIG profile '3g.41gb' for h100-80gb (valid: 1g.10gb, 1g.10gb+me, 1g.20gb, "),
        (["--gpu", "a100-40gb", "3g.40gb"], "unknown MIG profile '3g.40gb' for a100-40gb (valid: 1g.5gb, "),
        (["--gpu", "b200", "1g.10gb"], "--gpu: unknown GPU board 'b200' (valid: a100-40gb, a100-80gb, h100-80gb, "),
        (["0x1g.10gb"], "bad count in '0x1g.10gb': must be at least 1"),
        (["--fleet", "3x"], "unknown MIG profile '3x' for h100-80gb"),
        (["--output", "yaml", "1g.10gb"], "argument --output: invalid choice: 'yaml'"),
        ([], "the following arguments are required: PROFILE"),
        (["--config-name", " ", "1g.10gb"], "--config-name: must not be empty"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    """Unknown profiles and boards, bad counts and flags exit 2 with one line naming the value and the valid ones."""
    code, out, err = plan(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("mig-exporter: error: ")
    assert message in err


def test_a_driver_model_name_selects_the_board(capsys: pytest.CaptureFixture[str]) -> None:
    """--gpu also takes the model string the driver reports, such as NVIDIA A100-SXM4-40GB."""
    code, out, _ = plan(capsys, "--gpu", "NVIDIA A100-SXM4-40GB", "3g.20gb", "--output", "json")
    assert code == 0 and json.loads(out)["gpu"] == "a100-40gb"


def test_fleet_json_lists_the_fewest_gpus_and_their_layouts(capsys: pytest.CaptureFixture[str]) -> None:
    """--fleet packs 12x1g.10gb and 4x3g.40gb into 4 GPUs and lists every instance exactly once."""
    code, out, _ = plan(capsys, "--fleet", "12x1g.10gb", "4x3g.40gb", "--output", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["gpu"] == "h100-80gb" and doc["gpus"] == 4 and len(doc["layouts"]) == 4
    assert doc["demand"] == {"1g.10gb": 12, "3g.40gb": 4}
    placed: dict[str, int] = {}
    for layout in doc["layouts"]:
        assert set(layout) == {"instances", "free"}
        for instance in layout["instances"]:
            assert set(instance) == {"profile", "start", "size", "compute_slices", "memory_slices"}
            placed[instance["profile"]] = placed.get(instance["profile"], 0) + 1
    assert placed == {"1g.10gb": 12, "3g.40gb": 4}


def test_fleet_text_groups_identical_gpus(capsys: pytest.CaptureFixture[str]) -> None:
    """The text fleet report counts GPUs sharing a layout and draws each distinct layout once."""
    code, out, _ = plan(capsys, "--fleet", "12x1g.10gb", "4x3g.40gb")
    assert code == 0
    assert out.startswith("12x1g.10gb + 4x3g.40gb on H100 80GB (h100-80gb): 4 GPUs, the fewest possible\n")
    assert "3 x  3g.40gb@4 + 1g.10gb@0 + 1g.10gb@1 + 1g.10gb@2 + 1g.10gb@3   (GPU 0-2)" in out
    assert "1 x  3g.40gb@4   (GPU 3)" in out


def _check_mig_parted(doc: Any, name: str) -> list[dict[str, Any]]:
    """The rules nvidia-mig-parted's v1 spec parser applies, restated; returns the entries of `name`."""
    assert set(doc) == {"version", "mig-configs"} and doc["version"] == "v1"
    entries = doc["mig-configs"][name]
    assert entries
    for entry in entries:
        assert set(entry) <= {"device-filter", "devices", "mig-enabled", "mig-devices"}
        assert entry["devices"] == "all" or all(isinstance(i, int) for i in entry["devices"])
        assert entry["mig-enabled"] is True and entry["mig-devices"]
        assert all(isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in entry["mig-devices"].items())
    return list(entries)


def test_mig_parted_output_is_a_config_for_one_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    """--output mig-parted prints a v1 config that applies the layout to all GPUs and says placements are not pinned."""
    code, out, _ = plan(capsys, "4g.40gb", "2g.20gb", "1g.10gb", "--output", "mig-parted", "--config-name", "mixed")
    assert code == 0
    assert "not pinned" in " ".join(line for line in out.splitlines() if line.startswith("#"))
    entries = _check_mig_parted(yaml.safe_load(out), "mixed")
    assert entries == [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"4g.40gb": 1, "2g.20gb": 1, "1g.10gb": 1}}
    ]


def test_mig_parted_output_for_a_fleet_numbers_the_gpus(capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet's config gives GPUs with the same counts one entry and covers the whole demand."""
    code, out, _ = plan(capsys, "--fleet", "12x1g.10gb", "4x3g.40gb", "--output", "mig-parted")
    assert code == 0
    entries = _check_mig_parted(yaml.safe_load(out), "planned")
    assert entries == [
        {"devices": [0, 1, 2], "mig-enabled": True, "mig-devices": {"3g.40gb": 1, "1g.10gb": 4}},
        {"devices": [3], "mig-enabled": True, "mig-devices": {"3g.40gb": 1}},
    ]


def test_mig_parted_output_of_a_layout_that_does_not_fit_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """No config is printed for an impossible layout; the reason goes to stderr and the exit code is 1."""
    code, out, err = plan(capsys, "4g.40gb", "4g.40gb", "--output", "mig-parted")
    assert code == 1 and out == ""
    assert err.strip() == "mig-exporter: 2x4g.40gb does not fit h100-80gb: 2 x 4g.40gb exceeds its maximum of 1 per GPU"


def test_the_installed_entry_point_reports_bad_input_without_a_traceback() -> None:
    """Run as a process, an unknown profile still ends with exit code 2 and one stderr line."""
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "plan", "--gpu", "h200-141gb", "1g.10gb"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "mig-exporter: error: unknown MIG profile '1g.10gb' for h200-141gb "
        "(valid: 1g.18gb, 1g.18gb+me, 1g.35gb, 2g.35gb, 3g.71gb, 4g.71gb, 7g.141gb)"
    ]


def test_svg_output_draws_the_layout(capsys: pytest.CaptureFixture[str]) -> None:
    """--output svg prints the slice map as an SVG document with one box per instance."""
    code, out, _ = plan(capsys, "4g.40gb", "3g.40gb", "--output", "svg")
    assert code == 0
    root = ET.fromstring(out)
    titles = [g.find("{http://www.w3.org/2000/svg}title").text for g in root.iter("{http://www.w3.org/2000/svg}g")]  # type: ignore[union-attr]
    assert titles == ["4g.40gb", "3g.40gb"]
    code, _, err = plan(capsys, "--fleet", "4g.40gb", "--output", "svg")
    assert code == 2 and "--output svg draws one GPU's layout" in err


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(count=st.one_of(st.integers(0, 2_000_000), st.integers(0, 10**6000)), fleet=st.booleans())
def test_any_count_is_answered_quickly_in_one_line(capsys: pytest.CaptureFixture[str], count: int, fleet: bool) -> None:
    """A count of any size (14 digits used to end in MemoryError, 5,000 in ValueError) is a plan, a does-not-fit
    or one error line, within seconds."""
    started = time.monotonic()
    digits = str(count) if count < 10**4000 else "9" * 5000  # str() refuses more than 4,300 digits
    code, out, err = plan(capsys, *(["--fleet"] if fleet else []), f"{digits}x1g.10gb", "--output", "json")
    assert time.monotonic() - started < 5
    if code == 2:
        assert err.count("\n") == 1 and ("bad count" in err or "--fleet: " in err) and out == ""
    else:
        doc = json.loads(out)
        assert code == (0 if fleet or 1 <= count <= 7 else 1)
        assert doc["gpus"] == -(-count // 7) if fleet else doc["fits"] is (code == 0)


def test_a_fleet_larger_than_any_real_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--fleet takes up to 100,000 instances in all (14,286 GPUs); beyond, one line says to split the demand."""
    code, out, err = plan(capsys, "--fleet", "60000x1g.10gb", "50000x2g.20gb")
    assert code == 2 and out == ""
    assert err == (
        "mig-exporter: error: --fleet: 110,000 instances are more than the 100,000 one plan packs; split the demand\n"
    )


@FUZZ
@given(name=st.text(min_size=1, max_size=80))
def test_a_config_name_cannot_inject_yaml(capsys: pytest.CaptureFixture[str], name: str) -> None:
    """--config-name is a Kubernetes label value (the GPU Operator applies configs by a node label) or exit 2:
    a newline can no longer end the header comment and add keys."""
    code, out, err = plan(capsys, "--output", "mig-parted", "--config-name", name, "1g.10gb")
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("mig-exporter: error: --config-name")
        return
    assert code == 0 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", name)
    doc = yaml.safe_load(out)
    assert set(doc) == {"version", "mig-configs"} and list(doc["mig-configs"]) == [name]


def test_a_newline_in_the_config_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """The name that used to inject `evil: 1` into the output is refused."""
    code, out, err = plan(capsys, "--output", "mig-parted", "--config-name", "a\nevil: 1", "1g.10gb")
    assert code == 2 and out == "" and "'a\\nevil: 1' is not a name" in err
