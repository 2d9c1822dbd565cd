"""The exposition: the metric contract's series, labels and values, in both formats."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.exposition.dcgm import builders_for
from exporter.exposition.render import Renderer
from exporter.exposition.template import Format
from exporter.model import Field, GpuSample
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.promtool import check_metrics
from tests.support.snapshots import FIXED_TIME, fixed_snapshot

GOLDEN = Path(__file__).parent / "golden" / "dgx-h100.prom"


def series(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parse an exposition into {sample name: [(labels, value)]}."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture(scope="module")
def text() -> str:
    return Renderer(builders_for("native")).render(fixed_snapshot()).decode()


def test_golden_exposition_matches(text: str) -> None:
    """The dgx-h100 exposition at a fixed time is byte-identical to the reviewed golden file.

    Regenerate with UPDATE_GOLDEN=1 after an intended change, and review the diff.
    """
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_promtool_check_metrics_is_clean(text: str) -> None:
    """promtool's linter finds nothing to complain about."""
    returncode, complaints = check_metrics(text)
    assert returncode == 0 and complaints == [], complaints


def test_every_instance_has_its_series_with_contract_labels(text: str) -> None:
    """Each GPU instance of dgx-h100 has info, slices, activity ratios and memory, labelled gpu/gi/profile."""
    s = series(text)
    sim = Simulator(load("dgx-h100"))
    expected = {(str(g.index), str(i.gi), i.profile) for g, i in sim.topology().iter_instances()}
    assert len(expected) == 24
    for name in (
        "mig_instance_compute_slices",
        "mig_instance_memory_slices",
        "mig_instance_gr_engine_active_ratio",
        "mig_instance_sm_active_ratio",
        "mig_instance_sm_occupancy_ratio",
        "mig_instance_tensor_active_ratio",
        "mig_instance_dram_active_ratio",
        "mig_instance_memory_used_bytes",
        "mig_instance_memory_total_bytes",
    ):
        got = {(lbl["gpu"], lbl["gi"], lbl["profile"]) for lbl, _ in s[name]}
        assert got == expected, name
        assert all(set(lbl) == {"gpu", "gi", "profile"} for lbl, _ in s[name]), name
    info = {(lbl["gpu"], lbl["gi"]): lbl for lbl, _ in s["mig_instance_info"]}
    assert info[("1", "2")] == {
        "gpu": "1",
        "uuid": sim.gpu_uuid(1),
        "gi": "2",
        "profile": "3g.40gb",
        "placement_start": "4",
        "placement_size": "4",
    }


def test_values_equal_the_simulator_truth(text: str) -> None:
    """Activity and memory per instance and per compute instance are the simulator's values."""
    s = series(text)
    sim = Simulator(load("dgx-h100"))
    active = {(lbl["gpu"], lbl["gi"]): v for lbl, v in s["mig_instance_gr_engine_active_ratio"]}
    memory = {(lbl["gpu"], lbl["gi"]): v for lbl, v in s["mig_instance_memory_used_bytes"]}
    for g, i in sim.topology().iter_instances():
        key = (str(g.index), str(i.gi))
        assert active[key] == pytest.approx(sim.gi_activity(g.index, i.gi, FIXED_TIME)[Field.GR_ENGINE_ACTIVE])
        assert memory[key] == sim.gi_memory_used(g.index, i.gi, FIXED_TIME)
    ci = {(lbl["gpu"], lbl["gi"], lbl["ci"]): v for lbl, v in s["mig_compute_instance_gr_engine_active_ratio"]}
    assert ci[("4", "1", "0")] == 0.9 and ci[("4", "1", "1")] == 0.0 and ci[("4", "1", "2")] == 0.5
    assert len(ci) == 28
    ci_info = {(lbl["gpu"], lbl["gi"], lbl["ci"]): lbl for lbl, _ in s["mig_compute_instance_info"]}
    assert ci_info[("4", "1", "0")]["ci_profile"] == "4c.7g.80gb"
    assert ci_info[("4", "1", "0")]["mig_uuid"] == sim.mig_uuid(4, 1, 0)


def test_gpu_wide_values_appear_once_per_gpu(text: str) -> None:
    """Power, temperature and whole-GPU memory have one series per GPU, labelled gpu and uuid only."""
    s = series(text)
    for name in (
        "mig_gpu_power_watts",
        "mig_gpu_temperature_celsius",
        "mig_gpu_memory_used_bytes",
        "mig_gpu_memory_total_bytes",
    ):
        assert sorted(lbl["gpu"] for lbl, _ in s[name]) == [str(i) for i in range(8)], name
        assert all(set(lbl) == {"gpu", "uuid"} for lbl, _ in s[name])


def test_whole_gpu_activity_only_for_mig_disabled_gpu(text: str) -> None:
    """mig_gpu_gr_engine_active_ratio exists for GPU 7 (MIG off) and no other."""
    s = series(text)
    assert [(lbl["gpu"], v) for lbl, v in s["mig_gpu_gr_engine_active_ratio"]] == [("7", 0.65)]
    modes = {lbl["gpu"]: lbl["mig_mode"] for lbl, _ in s["mig_gpu_info"]}
    assert modes["7"] == "disabled" and modes["0"] == "enabled"


def test_exporter_self_metrics(text: str) -> None:
    """Build info, source state, sample time and duration are present; no errors yet."""
    s = series(text)
    assert s["mig_exporter_build_info"][0][0]["source"] == "synthetic"
    assert s["mig_exporter_source_up"] == [({"source": "synthetic"}, 1.0)]
    assert s["mig_exporter_last_sample_timestamp_seconds"] == [({}, FIXED_TIME)]
    assert "mig_exporter_sample_duration_seconds" in s


def test_unsupported_field_is_absent_and_explained() -> None:
    """A field the source cannot read has no series, and field_supported says why; never a zero."""
    snap = fixed_snapshot("demo")
    sample = snap.samples[0]
    stripped = GpuSample(
        gpu=0,
        values={
            e: {f: v for f, v in vals.items() if f is not Field.TENSOR_ACTIVE} for e, vals in sample.values.items()
        },
        unsupported={Field.TENSOR_ACTIVE: "no_gpm"},
    )
    s = series(Renderer(builders_for("native")).render(dataclasses.replace(snap, samples={0: stripped})).decode())
    assert "mig_instance_tensor_active_ratio" not in s
    support = {lbl["field"]: (lbl["reason"], v) for lbl, v in s["mig_exporter_field_supported"]}
    assert support["tensor_active"] == ("no_gpm", 0.0)
    assert support["gr_engine_active"] == ("", 1.0)


def test_stale_gpu_keeps_identity_but_loses_values() -> None:
    """A GPU whose sample failed keeps its info series; its values and its instances' values vanish."""
    snap = fixed_snapshot()
    samples = {k: v for k, v in snap.samples.items() if k != 1}
    stale = dataclasses.replace(
        snap, samples=samples, stale_gpus=frozenset({1}), source_up=False, errors={("sample", "deadline"): 3}
    )
    s = series(Renderer(builders_for("native")).render(stale).decode())
    assert {lbl["gpu"] for lbl, _ in s["mig_instance_info"]} >= {"1"}
    assert "1" not in {lbl["gpu"] for lbl, _ in s["mig_instance_gr_engine_active_ratio"]}
    assert "1" not in {lbl["gpu"] for lbl, _ in s["mig_gpu_power_watts"]}
    assert s["mig_exporter_source_up"][0][1] == 0.0
    assert s["mig_exporter_errors_total"] == [({"stage": "sample", "reason": "deadline"}, 3.0)]


def test_openmetrics_ends_with_eof_and_names_counters_without_total() -> None:
    """OpenMetrics ends with # EOF and declares the errors counter by its family name, its samples with _total."""
    snapshot = dataclasses.replace(fixed_snapshot("demo"), errors={("sample", "deadline"): 2})
    body = Renderer(builders_for("native")).render(snapshot, Format.OPENMETRICS).decode()
    assert body.endswith("# EOF\n")
    assert "# TYPE mig_exporter_errors counter\n" in body
    assert 'mig_exporter_errors_total{reason="deadline",stage="sample"} 2.0\n' in body


PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PROMETHEUS_ACCEPT, Format.OPENMETRICS),
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8,text/plain;version=0.0.4;q=0.5",
            Format.OPENMETRICS,
        ),
        ("application/openmetrics-text", Format.OPENMETRICS),
        ("text/plain", Format.TEXT),
        ("text/plain;version=1.0.0", Format.TEXT),
        ("application/openmetrics-text;version=0.0.1", Format.TEXT),  # prometheus-client makes only OM 1.0
        ("", Format.TEXT),
        ("*/*", Format.TEXT),
    ],
)
def test_accept_negotiation(accept: str, expected: Format) -> None:
    """OpenMetrics only when the client names it, as Prometheus does (prometheus-client's own negotiation)."""
    assert Format.for_accept(accept) is expected
