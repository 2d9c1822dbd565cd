"""The synthetic simulator: deterministic, patterns as specified, hardware-like aggregation."""

from __future__ import annotations

import math

import pytest

from exporter.model import Entity, Field
from exporter.sources.synthetic.patterns import Bursty, Diurnal, Idle, Ramp, Steady, evaluate
from exporter.sources.synthetic.scenario import load, parse
from exporter.sources.synthetic.simulator import Simulator

T0 = 1_790_000_000.0  # a fixed instant


def test_same_scenario_and_time_give_identical_samples() -> None:
    """Two simulators of one scenario agree exactly at any instant, noise included."""
    a, b = Simulator(load("demo")), Simulator(load("demo"))
    for t in (T0, T0 + 0.5, T0 + 3600 * 7.25):
        assert a.sample(0, t) == b.sample(0, t)


def test_noise_changes_with_time_and_stays_within_amplitude() -> None:
    """Noise is deterministic per second, varies across seconds, and never exceeds its amplitude."""
    pattern = Steady(0.5, noise=0.05)
    values = [evaluate(pattern, T0 + s, "seed") for s in range(200)]
    assert len(set(values)) > 100
    assert all(0.45 <= v <= 0.55 for v in values)
    assert evaluate(pattern, T0 + 3.2, "seed") == evaluate(pattern, T0 + 3.9, "seed")


def test_patterns_follow_their_definitions() -> None:
    """Idle is 0, steady its level, bursty on for its duty, diurnal peaks at its hour, ramp rises."""
    assert evaluate(Idle(), T0, "s") == 0.0
    assert evaluate(Steady(0.42), T0, "s") == 0.42
    bursty = Bursty(high=0.9, low=0.1, period=100, duty=0.3)
    assert [evaluate(bursty, t, "s") for t in (0, 29, 30, 99, 100)] == [0.9, 0.9, 0.1, 0.1, 0.9]
    diurnal = Diurnal(mean=0.5, amplitude=0.3, peak_hour=14)
    peak = 86400 * 20000 + 14 * 3600
    assert evaluate(diurnal, peak, "s") == pytest.approx(0.8)
    assert evaluate(diurnal, peak + 43200, "s") == pytest.approx(0.2)
    ramp = Ramp(start=0.1, end=0.9, period=1000)
    assert [round(evaluate(ramp, t, "s"), 3) for t in (0, 500, 999.0, 1000)] == [0.1, 0.5, 0.899, 0.1]


def test_gpu_instance_reads_slice_weighted_mean_of_its_compute_instances(dgx: Simulator) -> None:
    """One busy 1c of three in a 3g reads a third of its activity on the GPU instance."""
    gi = dgx.gi_activity(5, 1, T0)[Field.GR_ENGINE_ACTIVE]
    assert gi == pytest.approx(0.9 / 3)
    # GPU 4: a 7g with 4c at 0.9, 2c idle, 1c at 0.5.
    assert dgx.gi_activity(4, 1, T0)[Field.GR_ENGINE_ACTIVE] == pytest.approx((4 * 0.9 + 1 * 0.5) / 7)


def test_gpu_activity_is_compute_slice_weighted_sum_of_instances(dgx: Simulator) -> None:
    """Whole-GPU activity equals the sum of instance activity times compute slices over 7."""
    topo = dgx.topology()
    for gpu in topo.gpus:
        if not gpu.mig_enabled:
            continue
        expected = (
            sum(dgx.gi_activity(gpu.index, i.gi, T0)[Field.GR_ENGINE_ACTIVE] * i.compute_slices for i in gpu.instances)
            / 7
        )
        assert dgx.gpu_activity(gpu.index, T0)[Field.GR_ENGINE_ACTIVE] == pytest.approx(expected)


def test_dgx_h100_scenario_has_the_promised_shape(dgx: Simulator) -> None:
    """8 H100 80GB, at least 24 GPU instances, 4 idle, a multi-CI instance and a MIG-disabled GPU."""
    topo = dgx.topology()
    assert len(topo.gpus) == 8
    assert {g.model for g in topo.gpus} == {"NVIDIA H100 80GB HBM3"}
    instances = list(topo.iter_instances())
    assert len(instances) >= 24
    idle = [
        (g.index, i.gi)
        for g, i in instances
        if all(dgx.gi_activity(g.index, i.gi, T0 + h * 3600)[Field.GR_ENGINE_ACTIVE] == 0 for h in range(24))
    ]
    assert len(idle) >= 4
    assert any(len(i.compute_instances) > 1 for _, i in instances)
    assert [g.index for g in topo.gpus if not g.mig_enabled] == [7]
    uuids = [ci.mig_uuid for _, _, ci in topo.iter_compute_instances()]
    assert len(set(uuids)) == len(uuids) and all(u.startswith("MIG-") for u in uuids)


GPU_WIDE = (
    Field.POWER,
    Field.TEMPERATURE,
    Field.SM_CLOCK,
    Field.MEMORY_CLOCK,
    Field.MEMORY_TEMPERATURE,
    Field.ENERGY,
    Field.PCIE_REPLAYS,
    Field.MEMORY_RESERVED,
    Field.REMAPPED_ROWS_CORRECTABLE,
    Field.REMAPPED_ROWS_UNCORRECTABLE,
    Field.ROW_REMAP_FAILURE,
    Field.NVLINK_RATE,
    Field.ENCODER_UTIL,
    Field.DECODER_UTIL,
)
COUNTERS = (Field.ENERGY, Field.PCIE_REPLAYS, Field.REMAPPED_ROWS_CORRECTABLE)


def test_sample_reports_gpu_wide_values_only_on_the_gpu_entity(dgx: Simulator) -> None:
    """Power, temperatures, clocks, energy, replays, remapped rows and NVLink belong to the GPU, never to an instance;
    PCIe traffic to each GPU instance (and a MIG-disabled GPU); NVML-style utilization only to a MIG-disabled GPU."""
    for gpu in range(8):
        sample = dgx.sample(gpu, T0)
        assert set(GPU_WIDE) <= set(sample.values[Entity(gpu)])
        whole_only = {Field.GPU_UTIL, Field.MEMORY_COPY_UTIL, Field.PCIE_TX_RATE, Field.PCIE_RX_RATE}
        assert (whole_only <= set(sample.values[Entity(gpu)])) == (gpu == 7)
        for entity, values in sample.values.items():
            if entity.gi is not None:
                assert not set(GPU_WIDE) & set(values)
                assert (Field.PCIE_TX_RATE in values) == (entity.ci is None)


def test_counters_never_go_down_not_even_across_a_repartition(dgx: Simulator) -> None:
    """Energy, PCIe replays and NVML's NVLink counter (only without MIG) grow with time; a re-partition resets none."""
    last: dict[tuple[int, Field], float] = {}
    for step in range(0, 7 * 86400, 5 * 3600 + 7):
        if step > 3 * 86400 and dgx.topology().gpus[0].instances[0].profile == "1g.10gb":
            dgx.repartition(0, dgx.scenario.gpus[1].instances)
        for gpu in range(8):
            values = dgx.sample(gpu, T0 + step).values[Entity(gpu)]
            for fld in COUNTERS:
                assert values[fld] >= last.get((gpu, fld), 0.0), (gpu, fld, step)
                last[(gpu, fld)] = values[fld]
    assert all(last[(gpu, Field.ENERGY)] > 0 for gpu in range(8))
    kib = [dgx.nvlink_kib(7, T0 + step) for step in range(0, 86400, 3600)]
    assert kib == sorted(kib) and kib[-1] > kib[0] and dgx.nvlink_kib(0, T0 + 86400) == 0  # MIG: no NVLink traffic
    rate = dgx.sample(7, T0).values[Entity(7)][Field.NVLINK_RATE]
    assert rate > 0 and rate % (1000 * 1024) == 0  # a whole number of DCGM's units


def test_memory_used_follows_pattern_times_instance_memory(demo: Simulator) -> None:
    """A 3g.40gb at memory level 0.72 uses 72% of its 39.5 GiB."""
    assert demo.gi_memory_used(0, 1, T0) == round(0.72 * 39.5 * 2**30)


def test_repartition_changes_the_topology(demo: Simulator) -> None:
    """Re-partitioning a GPU replaces its instances and keeps the GPU's identity."""
    before = demo.topology().gpus[0]
    new = parse("gpus: [{instances: [{profile: 7g.80gb, activity: 0.5}]}]").gpus[0].instances
    demo.repartition(0, new)
    after = demo.topology().gpus[0]
    assert after.uuid == before.uuid
    assert [i.profile for i in after.instances] == ["7g.80gb"]
    assert demo.sample(0, T0).get(Entity(0, 1), Field.GR_ENGINE_ACTIVE) == 0.5


def test_values_are_ratios_between_zero_and_one(dgx: Simulator) -> None:
    """Every activity value at many instants lies in 0..1."""
    for step in range(0, 86400, 3600):
        for gpu in range(8):
            for values in dgx.sample(gpu, T0 + step).values.values():
                for fld, v in values.items():
                    if fld.value.endswith("active") or fld is Field.SM_OCCUPANCY:
                        assert 0.0 <= v <= 1.0 and not math.isnan(v)
