"""`--names dcgm`: dcgm-exporter's names, units and labels beside the native families, for any source."""

from __future__ import annotations

import dataclasses
import math

import pytest

from exporter.exposition.dcgm import builders_for
from exporter.exposition.health import exporter_families
from exporter.exposition.native import native_families
from exporter.exposition.render import Renderer
from exporter.model import Entity, Field
from tests.support.promtool import check_metrics
from tests.support.snapshots import fixed_snapshot
from tests.test_exposition import series

MIB = 1024**2
PER_SLICE = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": Field.GR_ENGINE_ACTIVE,
    "DCGM_FI_PROF_SM_ACTIVE": Field.SM_ACTIVE,
    "DCGM_FI_PROF_SM_OCCUPANCY": Field.SM_OCCUPANCY,
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": Field.TENSOR_ACTIVE,
    "DCGM_FI_PROF_DRAM_ACTIVE": Field.DRAM_ACTIVE,
    "DCGM_FI_DEV_FB_USED": Field.MEMORY_USED,
    "DCGM_FI_DEV_FB_FREE": Field.MEMORY_TOTAL,  # checked as total - used
}
PER_GPU = {"DCGM_FI_DEV_POWER_USAGE": Field.POWER, "DCGM_FI_DEV_GPU_TEMP": Field.TEMPERATURE}


@pytest.fixture(scope="module")
def text() -> str:
    return Renderer(builders_for("dcgm")).render(fixed_snapshot()).decode()


def test_dcgm_names_carry_gpu_i_labels_on_every_mig_series(text: str) -> None:
    """Each GPU instance of dgx-h100 has every per-slice family with GPU_I_PROFILE and GPU_I_ID and the GPU labels."""
    snapshot = fixed_snapshot()
    s = series(text)
    expected = {
        (str(g.index), g.uuid, f"nvidia{g.index}", g.model, i.profile, str(i.gi))
        for g, i in snapshot.topology.iter_instances()
    }
    assert len(expected) == 24
    for name in PER_SLICE:
        mig = [lbl for lbl, _ in s[name] if lbl["gpu"] != "7"]
        got = {
            (lbl["gpu"], lbl["UUID"], lbl["device"], lbl["modelName"], lbl["GPU_I_PROFILE"], lbl["GPU_I_ID"])
            for lbl in mig
        }
        assert got == expected, name
        whole = [lbl for lbl, _ in s[name] if lbl["gpu"] == "7"]  # MIG disabled: one series, no MIG labels
        assert len(whole) == 1 and "GPU_I_ID" not in whole[0], name


def test_dcgm_names_values_and_units(text: str) -> None:
    """Ratios stay 0..1, memory is in MiB (free = total - used), power and temperature once per GPU."""
    snapshot = fixed_snapshot()
    s = series(text)
    for name, fld in PER_SLICE.items():
        for labels, value in s[name]:
            gpu = int(labels["gpu"])
            gi = int(labels["GPU_I_ID"]) if "GPU_I_ID" in labels else None
            values = snapshot.samples[gpu].values[Entity(gpu, gi)]
            if name == "DCGM_FI_DEV_FB_FREE":
                assert value == round((values[Field.MEMORY_TOTAL] - values[Field.MEMORY_USED]) / MIB)
            elif fld is Field.MEMORY_USED:
                assert value == round(values[fld] / MIB)
            else:
                assert value == pytest.approx(values[fld]) and 0 <= value <= 1
    for name, fld in PER_GPU.items():
        assert sorted(int(lbl["gpu"]) for lbl, _ in s[name]) == list(range(8)), name
        for labels, value in s[name]:
            assert "GPU_I_ID" not in labels
            assert value == snapshot.samples[int(labels["gpu"])].values[Entity(int(labels["gpu"]))][fld]


def test_dcgm_names_are_added_to_the_native_exposition(text: str) -> None:
    """The native families are unchanged: dcgm names come in addition, so native dashboards keep working."""
    native = Renderer(builders_for("native")).render(fixed_snapshot()).decode()
    assert text.startswith(native)
    assert builders_for("native") == (native_families, exporter_families)


def test_dcgm_names_promtool_flags_only_the_modelname_label(text: str) -> None:
    """promtool's only complaint is dcgm-exporter's camelCase `modelName` label, kept for compatibility."""
    _, complaints = check_metrics(text)
    assert complaints, "expected promtool to flag the modelName label"
    for line in complaints:
        assert line.startswith("DCGM_FI_") and "label names should be written in 'snake_case' not 'camelCase'" in line


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
