"""`--collectors FILE`: a dcgm-exporter counters CSV picks the `--names dcgm` families; a bad file exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.exposition.counters import CountersError, parse_counters, read_counters
from exporter.exposition.dcgm import DcgmOptions, builders_for
from exporter.exposition.render import Renderer
from tests.support.snapshots import fixed_snapshot
from tests.test_exposition import series

DEFAULT_COUNTERS = Path(__file__).parent / "fixtures" / "dcgm-exporter" / "default-counters.csv"
# The families dcgm-exporter's etc/default-counters.csv turns on (its uncommented metric rows), in its order.
DEFAULT_FAMILIES = [
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "DCGM_FI_PROF_PCIE_RX_BYTES",
]


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--source", "synthetic", "--listen", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_dcgm_exporters_default_counters_file_is_accepted_as_it_is() -> None:
    """Its own default-counters.csv picks exactly its uncommented fields, the driver-version label, and the rest."""
    selection = read_counters(str(DEFAULT_COUNTERS))
    assert [c.family.name for c in selection.families] == DEFAULT_FAMILIES
    assert selection.labels == ("DCGM_FI_DRIVER_VERSION",)
    assert selection.not_collected == ("DCGM_FI_DEV_VGPU_LICENSE_STATUS",)
    types = {c.family.name: c.type for c in selection.families}
    assert types["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter" and types["DCGM_FI_DEV_SM_CLOCK"] == "gauge"
    helps = {c.family.name: c.help for c in selection.families}
    assert helps["DCGM_FI_DEV_DEC_UTIL"] == "Decoder utilization (in %)."  # its stray space before the comma


def test_default_counters_serve_only_their_families_and_name_what_is_not_read() -> None:
    """With the default file: its families and help texts, no others; the fields not read named in field_supported."""
    options = DcgmOptions(hostname="dgx-07", selection=read_counters(str(DEFAULT_COUNTERS)))
    text = Renderer(builders_for("dcgm", options)).render(fixed_snapshot()).decode()
    s = series(text)
    served = sorted(name for name in s if name.startswith("DCGM_FI_"))
    assert served == sorted(DEFAULT_FAMILIES)
    assert "DCGM_FI_PROF_SM_ACTIVE" not in s  # commented out in the file
    assert "# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz). (dcgm-exporter name; --names dcgm)\n" in text
    assert all(labels["DCGM_FI_DRIVER_VERSION"] == "550.127.05" for labels, _ in s["DCGM_FI_DEV_GPU_TEMP"])
    assert sorted(labels["gpu"] for labels, value in s["DCGM_FI_DEV_XID_ERRORS"] if value == 0) == [
        str(gpu) for gpu in range(8)
    ]  # the last XID per GPU, 0 before any
    for gpu in range(8):
        labels = f'field="DCGM_FI_DEV_VGPU_LICENSE_STATUS",gpu="{gpu}",reason="not_collected"'
        assert f"mig_exporter_field_supported{{{labels}}} 0.0\n" in text


def test_a_file_without_the_label_row_serves_no_driver_version_label() -> None:
    """Label rows are chosen too: without DCGM_FI_DRIVER_VERSION the series carry no such label."""
    selection = parse_counters("DCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature (in C).\n", "t.csv")
    text = Renderer(builders_for("dcgm", DcgmOptions(selection=selection))).render(fixed_snapshot()).decode()
    s = series(text)
    assert [name for name in s if name.startswith("DCGM_FI_")] == ["DCGM_FI_DEV_GPU_TEMP"]
    assert all("DCGM_FI_DRIVER_VERSION" not in labels for labels, _ in s["DCGM_FI_DEV_GPU_TEMP"])


def test_quoted_help_with_commas_comments_and_blank_lines() -> None:
    """CSV quoting, `#` comments and blank lines read as dcgm-exporter's Go csv reader reads them."""
    text = '# a comment\n\n  DCGM_FI_DEV_POWER_USAGE ,  gauge , "Power, in W."\n# DCGM_FI_NOPE, gauge, x\n'
    selection = parse_counters(text, "t.csv")
    assert [(c.family.name, c.type, c.help) for c in selection.families] == [
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power, in W.")
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "# header\nDCGM_FI_DEV_GPU_TEMP, gauge, t\nDCGM_FI_DEV_SM_CLOKC, gauge, x\n",
            "c.csv:3: unknown field 'DCGM_FI_DEV_SM_CLOKC': mig-exporter cannot serve it; did you mean "
            "DCGM_FI_DEV_SM_CLOCK?",
        ),
        ("DCGM_FI_DEV_GPU_TEMP, gauge\n", "c.csv:1: expected 3 fields (DCGM field, type, help), got 2"),
        ("DCGM_FI_DEV_GPU_TEMP, gague, t\n", "c.csv:1: DCGM_FI_DEV_GPU_TEMP: type 'gague' is not one of gauge"),
        ("DCGM_FI_DRIVER_VERSION, gauge, v\n", "c.csv:1: DCGM_FI_DRIVER_VERSION is a label field"),
        ("DCGM_FI_DEV_GPU_TEMP, label, t\n", "c.csv:1: DCGM_FI_DEV_GPU_TEMP is a metric, not a label"),
        (
            "DCGM_FI_DEV_GPU_TEMP, gauge, t\n\nDCGM_FI_DEV_GPU_TEMP, gauge, t\n",
            "c.csv:3: DCGM_FI_DEV_GPU_TEMP is listed twice (first on line 1)",
        ),
    ],
)
def test_bad_counters_files_exit_2_naming_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    """Each bad file ends `serve` with exit code 2 and one stderr line naming the file, the line and the field."""
    path = tmp_path / "c.csv"
    path.write_text(content)
    with pytest.raises(CountersError, match=r".*"):
        read_counters(str(path))
    result = run_serve("--names", "dcgm", "--collectors", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("mig-exporter: error: --collectors: ")
    assert message.replace("c.csv", str(path)) in lines[0]


def test_missing_counters_file_and_collectors_without_dcgm_names(tmp_path: Path) -> None:
    """A file that cannot be read, or --collectors without --names dcgm, is one clear line and exit 2."""
    missing = run_serve("--names", "dcgm", "--collectors", str(tmp_path / "none.csv"))
    assert missing.returncode == 2 and f"{tmp_path / 'none.csv'}: cannot read it" in missing.stderr
    native = run_serve("--collectors", str(DEFAULT_COUNTERS))
    assert native.returncode == 2
    assert native.stderr.strip().splitlines() == [
        "mig-exporter: error: collectors: a counters file picks the dcgm-exporter families: add --names dcgm"
    ]
