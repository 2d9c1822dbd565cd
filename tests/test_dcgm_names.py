"""`--names dcgm`: dcgm-exporter's names, units and labels beside the native families, for any source."""

from __future__ import annotations

import dataclasses
import math

import pytest

from exporter.exposition.dcgm import DcgmOptions, builders_for
from exporter.exposition.health import exporter_families
from exporter.exposition.native import native_families
from exporter.exposition.render import Renderer
from exporter.model import Entity, Field
from tests.support.promtool import check_metrics
from tests.support.snapshots import fixed_snapshot
from tests.test_exposition import series

MIB = 1024**2
NODE = DcgmOptions(hostname="dgx-07")
# Per GPU instance (or the GPU itself with MIG disabled): name -> (field, factor from base units).
PER_SLICE = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": (Field.GR_ENGINE_ACTIVE, 1.0),
    "DCGM_FI_PROF_SM_ACTIVE": (Field.SM_ACTIVE, 1.0),
    "DCGM_FI_PROF_SM_OCCUPANCY": (Field.SM_OCCUPANCY, 1.0),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": (Field.TENSOR_ACTIVE, 1.0),
    "DCGM_FI_PROF_DRAM_ACTIVE": (Field.DRAM_ACTIVE, 1.0),
    "DCGM_FI_PROF_PCIE_TX_BYTES": (Field.PCIE_TX_RATE, 1.0),
    "DCGM_FI_PROF_PCIE_RX_BYTES": (Field.PCIE_RX_RATE, 1.0),
    "DCGM_FI_DEV_FB_USED": (Field.MEMORY_USED, 1 / MIB),
    "DCGM_FI_DEV_FB_FREE": (Field.MEMORY_TOTAL, 1 / MIB),  # checked as total - used
}
# Once per GPU, in dcgm-exporter's units.
PER_GPU = {
    "DCGM_FI_DEV_POWER_USAGE": (Field.POWER, 1.0),
    "DCGM_FI_DEV_GPU_TEMP": (Field.TEMPERATURE, 1.0),
    "DCGM_FI_DEV_SM_CLOCK": (Field.SM_CLOCK, 1e-6),
    "DCGM_FI_DEV_MEM_CLOCK": (Field.MEMORY_CLOCK, 1e-6),
    "DCGM_FI_DEV_MEMORY_TEMP": (Field.MEMORY_TEMPERATURE, 1.0),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": (Field.ENERGY, 1e3),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": (Field.PCIE_REPLAYS, 1.0),
    "DCGM_FI_DEV_ENC_UTIL": (Field.ENCODER_UTIL, 100.0),
    "DCGM_FI_DEV_DEC_UTIL": (Field.DECODER_UTIL, 100.0),
    "DCGM_FI_DEV_FB_RESERVED": (Field.MEMORY_RESERVED, 1 / MIB),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": (Field.REMAPPED_ROWS_UNCORRECTABLE, 1.0),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": (Field.REMAPPED_ROWS_CORRECTABLE, 1.0),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": (Field.ROW_REMAP_FAILURE, 1.0),
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": (Field.NVLINK_RATE, 1 / (1024 * 1000)),  # a rate, in DCGM's unit
}
# Only on GPUs with MIG disabled (GPU 7 of dgx-h100).
WHOLE_GPU = {
    "DCGM_FI_DEV_GPU_UTIL": (Field.GPU_UTIL, 100.0),
    "DCGM_FI_DEV_MEM_COPY_UTIL": (Field.MEMORY_COPY_UTIL, 100.0),
}
COUNTERS = (
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
)


@pytest.fixture(scope="module")
def text() -> str:
    return Renderer(builders_for("dcgm", NODE)).render(fixed_snapshot()).decode()


def test_dcgm_names_carry_dcgm_exporter_labels_on_every_mig_series(text: str) -> None:
    """Each GPU instance has every per-slice family with dcgm-exporter's labels, GPU_I_PROFILE as DCGM names it."""
    snapshot = fixed_snapshot()
    s = series(text)
    expected = {
        (
            str(g.index),
            g.uuid,
            g.pci_bus_id,
            f"nvidia{g.index}",
            g.model,
            "dgx-07",
            g.driver_version,
            i.profile.removesuffix("+me"),  # DCGM: `1g.10gb` for the media-extension instance
            str(i.gi),
        )
        for g, i in snapshot.topology.iter_instances()
    }
    assert len(expected) == 24
    assert ("6", "1g.10gb", "3") in {(e[0], e[7], e[8]) for e in expected}  # GPU 6 holds 1g.10gb+me as GI 3
    for name in PER_SLICE:
        mig = [lbl for lbl, _ in s[name] if lbl["gpu"] != "7"]
        got = {
            tuple(
                lbl[k]
                for k in (
                    "gpu",
                    "UUID",
                    "pci_bus_id",
                    "device",
                    "modelName",
                    "Hostname",
                    "DCGM_FI_DRIVER_VERSION",
                    "GPU_I_PROFILE",
                    "GPU_I_ID",
                )
            )
            for lbl in mig
        }
        assert got == expected, name
        whole = [lbl for lbl, _ in s[name] if lbl["gpu"] == "7"]  # MIG disabled: one series, no MIG labels
        assert len(whole) == 1 and "GPU_I_ID" not in whole[0] and whole[0]["pci_bus_id"].endswith(":00.0"), name


def _expected(values: dict[Field, float], name: str, fld: Field, factor: float) -> float:
    if name == "DCGM_FI_DEV_FB_FREE":
        return round((values[Field.MEMORY_TOTAL] - values[Field.MEMORY_USED]) * factor)
    value = values[fld] * factor
    return value if factor == 1.0 else round(value)


def test_dcgm_names_values_and_units(text: str) -> None:
    """Ratios stay 0..1, memory in MiB, clocks in MHz, energy in mJ, utilization in %, NVLink in DCGM's unit."""
    snapshot = fixed_snapshot()
    s = series(text)
    for name, (fld, factor) in PER_SLICE.items():
        assert len(s[name]) == 25, name  # 24 GPU instances and GPU 7
        for labels, value in s[name]:
            gpu = int(labels["gpu"])
            gi = int(labels["GPU_I_ID"]) if "GPU_I_ID" in labels else None
            values = snapshot.samples[gpu].values[Entity(gpu, gi)]
            assert value == pytest.approx(_expected(values, name, fld, factor)), (name, labels)
    for table, gpus in ((PER_GPU, list(range(8))), (WHOLE_GPU, [7])):
        for name, (fld, factor) in table.items():
            assert sorted(int(lbl["gpu"]) for lbl, _ in s[name]) == gpus, name
            for labels, value in s[name]:
                assert "GPU_I_ID" not in labels and "GPU_I_PROFILE" not in labels  # GPU-wide: never per slice
                gpu = int(labels["gpu"])
                assert value == pytest.approx(_expected(snapshot.samples[gpu].values[Entity(gpu)], name, fld, factor))
    assert {v for _, v in s["DCGM_FI_DEV_SM_CLOCK"]} <= set(range(345, 1981))
    assert {v for _, v in s["DCGM_FI_DEV_MEM_CLOCK"]} == {2619}


def test_dcgm_counters_keep_their_names_untyped(text: str) -> None:
    """Counters keep dcgm-exporter's names (no `_total`); served untyped, as OpenMetrics wants `_total` on counters."""
    for name in COUNTERS:
        assert f"# TYPE {name} untyped\n" in text
        assert f"\n{name}{{" in text
    assert "# TYPE DCGM_FI_DEV_SM_CLOCK gauge\n" in text


def test_dcgm_hostname_label_can_be_lowercase() -> None:
    """Behind --dcgm-hostname-label hostname the node is named by `hostname`, as dcgm-exporter's newer releases do."""
    options = DcgmOptions(hostname="dgx-07", hostname_label="hostname")
    s = series(Renderer(builders_for("dcgm", options)).render(fixed_snapshot()).decode())
    for labels, _ in s["DCGM_FI_DEV_GPU_TEMP"]:
        assert labels["hostname"] == "dgx-07" and "Hostname" not in labels


def test_dcgm_refused_field_is_absent_with_its_reason() -> None:
    """A field the source cannot read on one GPU: its dcgm series is absent there and field_supported says why."""
    snapshot = fixed_snapshot()
    gpu0 = snapshot.samples[0]
    values = dict(gpu0.values)
    values[Entity(0)] = {f: v for f, v in values[Entity(0)].items() if f is not Field.SM_CLOCK}
    refused = dataclasses.replace(gpu0, values=values, unsupported={Field.SM_CLOCK: "not_supported"})
    snapshot = dataclasses.replace(snapshot, samples={**snapshot.samples, 0: refused})
    text = Renderer(builders_for("dcgm", NODE)).render(snapshot).decode()
    s = series(text)
    assert sorted(int(lbl["gpu"]) for lbl, _ in s["DCGM_FI_DEV_SM_CLOCK"]) == list(range(1, 8))
    assert 'mig_exporter_field_supported{field="sm_clock",gpu="0",reason="not_supported"} 0.0' in text
    assert 'mig_exporter_field_supported{field="sm_clock",gpu="1",reason=""} 1.0' in text


def test_dcgm_names_are_added_to_the_native_exposition(text: str) -> None:
    """The native families are unchanged: dcgm names come in addition, so native dashboards keep working."""
    native = Renderer(builders_for("native")).render(fixed_snapshot()).decode()
    assert text.startswith(native)
    assert builders_for("native") == (native_families, exporter_families)


def test_dcgm_names_promtool_flags_only_dcgm_exporters_own_naming(text: str) -> None:
    """promtool complains only of dcgm-exporter's names, kept for compatibility: `modelName`, `..._COUNTER`."""
    _, complaints = check_metrics(text)
    assert complaints, "expected promtool to flag the modelName label"
    for line in complaints:
        assert line.startswith("DCGM_FI_"), line
        assert "label names should be written in 'snake_case' not 'camelCase'" in line or line == (
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter'"
        ), line


def test_dcgm_memory_of_nan_or_infinite_values_passes_through() -> None:
    """A source giving NaN or infinite memory does not break the dcgm families (no rounding error)."""
    snapshot = fixed_snapshot("demo")
    entity = next(e for e in snapshot.samples[0].values if e.gi is not None)
    values = dict(snapshot.samples[0].values)
    values[entity] = {**values[entity], Field.MEMORY_USED: float("nan"), Field.MEMORY_TOTAL: float("inf")}
    broken = dataclasses.replace(snapshot, samples={0: dataclasses.replace(snapshot.samples[0], values=values)})
    s = series(Renderer(builders_for("dcgm")).render(broken).decode())
    gi = str(entity.gi)
    assert [math.isnan(v) for labels, v in s["DCGM_FI_DEV_FB_USED"] if labels.get("GPU_I_ID") == gi] == [True]
    assert [math.isnan(v) for labels, v in s["DCGM_FI_DEV_FB_FREE"] if labels.get("GPU_I_ID") == gi] == [True]
