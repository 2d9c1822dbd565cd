"""The DCGM source over the fake bindings and host engine: topology, values, blanks, restarts, re-partitions."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.exposition.dcgm import builders_for
from exporter.exposition.render import Renderer
from exporter.http.landing import ActivityWindow, layout, layout_fragment
from exporter.model import ACTIVITY_FIELDS, Entity, Field, Snapshot, Topology
from exporter.sampler import Sampler
from exporter.sources.base import SourceUnavailableError
from exporter.sources.dcgm.source import DcgmSource, library_file, load_bindings, open_dcgm
from exporter.sources.synthetic.simulator import Simulator
from tests.support.clock import ManualClock
from tests.support.fake_dcgm import FAKE_DCGM_DIR, fake_bindings, hostengine
from tests.test_cli import run_cli

MIB = 1024**2
T0 = 1_790_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def engine(dgx: Simulator, clock: ManualClock) -> Iterator[Any]:
    """A fake host engine serving the dgx-h100 scenario, installed for the fake bindings."""
    module = hostengine()
    eng = module.FakeHostEngine(dgx, clock=clock)
    module.install(eng)
    yield eng
    module.install(None)


@pytest.fixture
def source(engine: Any, clock: ManualClock) -> DcgmSource:
    src = DcgmSource(fake_bindings(), host="localhost:5555", interval=1.0, monotonic=clock)
    src.start()
    return src


def expected_topology(sim: Simulator) -> Topology:
    """The simulator's topology as DCGM can report it: no placements, no pending MIG mode."""
    return Topology(
        tuple(
            dataclasses.replace(
                g,
                mig_pending=None,
                instances=tuple(dataclasses.replace(i, placement_start=None) for i in g.instances),
            )
            for g in sim.topology().gpus
        )
    )


async def test_dcgm_discovery_yields_the_dgx_h100_topology(source: DcgmSource, dgx: Simulator) -> None:
    """Discovery maps DCGM's hierarchy to NVML GPU indexes, GI/CI ids, profile names and MIG UUIDs."""
    topology = await source.discover()
    assert topology == expected_topology(dgx)
    assert len(list(topology.iter_instances())) == 24
    gpu4 = topology.gpu(4)
    assert gpu4 is not None and [c.profile for c in gpu4.instances[0].compute_instances] == [
        "4c.7g.80gb",
        "2c.7g.80gb",
        "1c.7g.80gb",
    ]


async def test_dcgm_sample_yields_the_simulated_values(source: DcgmSource, dgx: Simulator, clock: ManualClock) -> None:
    """After one watch update every GPU, GI and CI reads the simulator's values at the update time.

    Each field on its entity: clocks, energy, remapped rows and NVLink on the GPU, PCIe rates on the GPU instances
    (or the MIG-disabled GPU); GPU and memory-copy utilization are refused on MIG-enabled GPUs, with the reason.
    """
    topology = await source.discover()
    clock.now = T0 + 1.2  # one update tick (at T0 + 1) after the watch began
    for gpu in topology.gpus:
        sample = await source.sample(gpu)
        truth = dgx.sample(gpu.index, T0 + 1.0)
        refused = (Field.GPU_UTIL, Field.MEMORY_COPY_UTIL) if gpu.mig_enabled else ()
        assert sample.unsupported == dict.fromkeys(refused, "not_supported")
        assert set(sample.values) == set(truth.values)
        for entity, fields in truth.values.items():
            got = sample.values[entity]
            for fld, value in fields.items():
                if fld in (Field.MEMORY_USED, Field.MEMORY_TOTAL):
                    assert abs(got[fld] - value) <= MIB / 2, (entity, fld)  # DCGM reports MiB
                else:
                    assert got[fld] == pytest.approx(value), (entity, fld)


async def test_dcgm_power_and_temperature_only_on_gpu_entities(
    source: DcgmSource, engine: Any, clock: ManualClock
) -> None:
    """Power and temperature are watched and reported on GPU entities only; profiling never on a MIG-enabled GPU."""
    topology = await source.discover()
    watched = {(entity, fid) for w in engine._watches.values() for entity in w.entities for fid in w.fields}
    gpu, gpu_i, mig_gpus = 1, 4, {g.index for g in topology.gpus if g.mig_enabled}
    assert {entity[0] for entity, fid in watched if fid in (150, 155)} == {gpu}
    assert not {(e, f) for e, f in watched if e[0] == gpu and e[1] in mig_gpus and 1001 <= f <= 1005}
    assert {(gpu, 7), (gpu_i, 0)} <= {e for e, f in watched if f == 1001}  # the MIG-disabled GPU and instances
    clock.now += 1.5
    sample = await source.sample(topology.gpus[0])
    assert Field.POWER in sample.values[Entity(0)]
    for entity, fields in sample.values.items():
        if entity.gi is not None:
            assert Field.POWER not in fields and Field.TEMPERATURE not in fields


async def test_dcgm_first_profiling_value_after_a_watch_is_absent_not_zero(source: DcgmSource) -> None:
    """The blank first profiling value after a watch leaves activity absent with reason no_data; memory is there."""
    topology = await source.discover()
    sample = await source.sample(topology.gpus[1])
    assert sample.get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) is None
    assert sample.unsupported[Field.GR_ENGINE_ACTIVE] == "no_data"
    assert sample.get(Entity(1, 1), Field.MEMORY_USED) is not None


async def test_dcgm_missing_profiling_module_reports_profiling_not_supported(engine: Any, clock: ManualClock) -> None:
    """Without profiling, activity series are absent with PROFILING_NOT_SUPPORTED; memory, power, temperature stay."""
    engine.profiling = False
    source = DcgmSource(fake_bindings(), interval=1.0, monotonic=clock)
    source.start()
    sampler = Sampler(source, clock=clock)
    snapshot = await sampler.run_once()
    clock.now += 1.5
    snapshot = await sampler.run_once()
    assert snapshot.source_up
    sample = snapshot.samples[0]
    for fld in ACTIVITY_FIELDS:
        assert sample.unsupported[fld] == "profiling_not_supported"
    assert sample.get(Entity(0), Field.POWER) is not None
    assert sample.get(Entity(0, 1), Field.MEMORY_USED) is not None
    text = Renderer(builders_for("native")).render(snapshot).decode()
    assert "mig_instance_gr_engine_active_ratio{" not in text
    assert 'mig_exporter_field_supported{field="gr_engine_active",gpu="0",reason="profiling_not_supported"} 0.0' in text


async def test_dcgm_blank_values_and_statuses_become_absent_series(
    source: DcgmSource, engine: Any, clock: ManualClock
) -> None:
    """Blank sentinels and NOT_SUPPORTED statuses give absent series and a reason, never zeros."""
    structs = fake_bindings().structs
    engine.blank[155] = "not_supported"  # power: FP64 NOT_SUPPORTED sentinel, status OK
    engine.statuses[1002] = structs.DCGM_ST_NOT_SUPPORTED  # SM active: per-value status
    engine.blank[252] = "blank"  # FB used and free blank: memory used has nothing to fall back on
    engine.blank[251] = "blank"
    sampler = Sampler(source, clock=clock)
    await sampler.run_once()
    clock.now += 1.5
    snapshot = await sampler.run_once()
    sample = snapshot.samples[3]
    assert sample.get(Entity(3), Field.POWER) is None
    assert sample.unsupported[Field.POWER] == "not_supported"
    assert sample.unsupported[Field.SM_ACTIVE] == "not_supported"
    assert sample.unsupported[Field.MEMORY_USED] == "no_data"
    assert sample.get(Entity(3, 1), Field.GR_ENGINE_ACTIVE) is not None
    assert sample.get(Entity(3), Field.TEMPERATURE) is not None
    text = Renderer(builders_for("native")).render(snapshot).decode()
    assert "mig_gpu_power_watts{" not in text and "mig_instance_sm_active_ratio{" not in text
    assert "mig_instance_memory_used_bytes{" not in text
    assert 'mig_exporter_field_supported{field="power",gpu="3",reason="not_supported"} 0.0' in text


async def test_dcgm_memory_used_falls_back_to_total_minus_free(
    source: DcgmSource, engine: Any, clock: ManualClock
) -> None:
    """A blank FB_USED with FB_TOTAL and FB_FREE present still gives memory used."""
    engine.blank[252] = "blank"
    topology = await source.discover()
    clock.now += 1.5
    sample = await source.sample(topology.gpus[1])
    assert sample.get(Entity(1, 1), Field.MEMORY_USED) is not None
    assert Field.MEMORY_USED not in sample.unsupported


async def test_dcgm_host_engine_restart_reconnects_and_recreates_watches(
    source: DcgmSource, engine: Any, clock: ManualClock
) -> None:
    """A restarted host engine drops source_up to 0, then the source reconnects with backoff and resumes."""
    sampler = Sampler(source, clock=clock)
    assert (await sampler.run_once()).source_up
    watches_before = engine.calls["watch"]

    engine.stop()
    connects = engine.calls["connect"]
    lost = await sampler.run_once()
    assert not lost.source_up and lost.samples == {}
    assert lost.errors[("sample", "connection_lost")] == 1  # the first GPU notices; the rest wait to reconnect
    assert lost.errors[("sample", "disconnected")] == 7
    assert engine.calls["connect"] == connects + 1  # one immediate reconnect attempt, which failed

    engine.start()
    waiting = await sampler.run_once()  # inside the 1 s backoff: no new attempt yet
    assert not waiting.source_up and engine.calls["connect"] == connects + 1
    assert waiting.errors[("sample", "disconnected")] == 15

    clock.now += 1.5
    back = await sampler.run_once()
    assert back.source_up
    assert ("sample", "not_found") not in back.errors  # re-creating the watches after a reconnect is routine
    assert engine.calls["connect"] == connects + 2
    assert engine.calls["watch"] > watches_before  # groups and watches re-created on the new connection
    assert back.samples[1].get(Entity(1, 1), Field.MEMORY_USED) is not None
    clock.now += 1.5
    resumed = await sampler.run_once()
    assert resumed.samples[1].get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) is not None


async def test_dcgm_repartition_is_picked_up_with_remapped_entity_ids(
    source: DcgmSource, engine: Any, dgx: Simulator, clock: ManualClock
) -> None:
    """A re-partition renumbers DCGM's entities; the source re-maps them and values land on the right slices."""
    sampler = Sampler(source, clock=clock)
    await sampler.run_once()
    groups_before = set(engine._groups)
    two_halves = dgx.scenario.gpus[1].instances  # 3g.40gb + 3g.40gb
    engine.repartition(0, two_halves)
    clock.now += 1.5
    snapshot = await sampler.run_once()
    assert snapshot.source_up and snapshot.errors == {} and snapshot.topology_changes == 1
    assert [i.profile for i in snapshot.topology.gpus[0].instances] == ["3g.40gb", "3g.40gb"]
    assert Entity(0, 7) not in snapshot.samples[0].values  # the old 1g instances are gone
    # Per GPU a group of its GPU entity and, with MIG on, one of its instances; shared field groups: GPU fields,
    # instance fields, the health and I/O fields, XIDs.
    assert len(engine._groups) == 2 * 7 + 1 and len(engine._field_groups) == 5
    replaced = groups_before - set(engine._groups)
    assert len(replaced) == 2  # only GPU 0's two groups were destroyed and re-created; the others kept watching
    assert "<td>?</td>" in layout_fragment(layout(snapshot, ActivityWindow(), "dcgm"))  # placement unknown
    clock.now += 1.5
    snapshot = await sampler.run_once()
    t_update = T0 + 3.0  # the re-created watch ticks from the discovery at T0 + 1.5
    for gpu in (0, 2, 6):
        truth = dgx.sample(gpu, t_update)
        for entity, fields in truth.values.items():
            got = snapshot.samples[gpu].values[entity]
            assert got[Field.GR_ENGINE_ACTIVE if entity.gi is not None else Field.POWER] == pytest.approx(
                fields[Field.GR_ENGINE_ACTIVE if entity.gi is not None else Field.POWER]
            ), entity


async def test_dcgm_embedded_engine(engine: Any, clock: ManualClock, dgx: Simulator) -> None:
    """`--dcgm-host embedded` starts an engine in-process and discovers the same node."""
    source = DcgmSource(fake_bindings(), host="embedded", monotonic=clock)
    source.start()
    assert engine.calls["start_embedded"] == 1
    assert await source.discover() == expected_topology(dgx)
    await source.close()


async def test_dcgm_close_removes_groups_and_disconnects(source: DcgmSource, engine: Any) -> None:
    """Closing the source destroys its groups and field groups and hangs up."""
    await source.discover()
    assert engine._groups and engine._field_groups
    await source.close()
    assert not engine._groups and not engine._field_groups and not engine._handles


def test_dcgm_missing_bindings_names_the_flag(tmp_path: Any) -> None:
    """A --dcgm-bindings directory without the bindings is refused with a one-line fix."""
    message = r"--dcgm-bindings / MIG_EXPORTER_DCGM_BINDINGS .*: no DCGM Python bindings there"
    with pytest.raises(SourceUnavailableError, match=message):
        load_bindings(str(tmp_path), environ={})
    with pytest.raises(SourceUnavailableError, match="MIG_EXPORTER_DCGM_BINDINGS"):
        load_bindings(None, environ={"MIG_EXPORTER_DCGM_BINDINGS": str(tmp_path)})


def test_dcgm_unreachable_engine_says_how_to_point_at_it(engine: Any) -> None:
    """No host engine at the address: the error names it and suggests --dcgm-host or embedded."""
    with pytest.raises(SourceUnavailableError) as info:
        open_dcgm(str(FAKE_DCGM_DIR), "localhost:5599", 1.0)
    message = str(info.value)
    assert "cannot connect to the DCGM host engine at localhost:5599" in message
    assert "--dcgm-host embedded" in message and "\n" not in message


def test_dcgm_missing_library_is_named(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bindings present but libdcgm.so.4 missing: the error names the library and how to install it."""
    monkeypatch.setenv("FAKE_DCGM_NO_LIBRARY", "1")
    with pytest.raises(SourceUnavailableError, match=r"libdcgm\.so\.4 could not be loaded"):
        open_dcgm(str(FAKE_DCGM_DIR), "localhost:5555", 1.0)


async def warm(source: DcgmSource, clock: ManualClock, discovery_interval: float = 0.0) -> Sampler:
    """A sampler past the first profiling values (two watch updates), discovering every cycle by default."""
    sampler = Sampler(source, clock=clock, discovery_interval=discovery_interval)
    await sampler.run_once()
    clock.now += 1.5
    snapshot = await sampler.run_once()
    assert snapshot.source_up and snapshot.samples[1].get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) is not None
    return sampler


def assert_only_lost_gpu_is_blind(snapshot: Snapshot, lost: int) -> None:
    """Every GPU but `lost` has its values and no not_watched reason; `lost` is stale, its identity kept."""
    assert snapshot.stale_gpus == {lost} and not snapshot.source_up
    assert snapshot.topology.gpu(lost) is not None and lost not in snapshot.samples
    assert sorted(snapshot.samples) == [g for g in range(8) if g != lost]
    for index, sample in snapshot.samples.items():
        assert "not_watched" not in sample.unsupported.values(), index
        assert sample.get(Entity(index), Field.POWER) is not None, index
    assert snapshot.samples[1].get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) == pytest.approx(0.7)
    assert not [key for key in snapshot.errors if key[0] == "discover"]


@pytest.mark.parametrize(
    ("listed", "errors"),
    [(True, {("sample", "no_data"): 1, ("sample", "gpu_is_lost"): 2}), (False, {("sample", "gpu_is_lost"): 3})],
    ids=["listed-and-failing", "dropped-from-the-list"],
)
async def test_dcgm_gpu_lost_mid_run_blinds_only_that_gpu(
    source: DcgmSource, engine: Any, clock: ManualClock, listed: bool, errors: dict[tuple[str, str], int]
) -> None:
    """A GPU lost mid-run is stale and counted each cycle; the others keep their watches through every discovery."""
    sampler = await warm(source, clock)
    watches, groups = engine.calls["watch"], set(engine._groups)
    engine.lose(0, listed=listed)
    for _ in range(3):
        clock.now += 1.0
        snapshot = await sampler.run_once()
        assert_only_lost_gpu_is_blind(snapshot, lost=0)
    # Listed, DCGM writes blanks for it (then refuses its groups: gpu_is_lost); dropped, it leaves the list.
    assert snapshot.errors == errors
    assert engine.calls["watch"] == watches  # nobody was watched again
    assert len(groups - set(engine._groups)) == 2  # only GPU 0's two groups were given up
    text = Renderer(builders_for("native")).render(snapshot).decode()
    assert 'mig_instance_info{gi="1",gpu="0"' in text  # its identity stays, marked stale through source_up
    assert 'mig_exporter_source_up{source="dcgm"} 0.0' in text


@pytest.mark.parametrize("listed", [True, False], ids=["listed-and-failing", "dropped-from-the-list"])
async def test_dcgm_gpu_lost_before_start_does_not_stop_the_others(
    engine: Any, clock: ManualClock, listed: bool
) -> None:
    """A GPU already lost at the first discovery fails alone: every other GPU is watched and reported."""
    engine.lose(0, listed=listed)
    source = DcgmSource(fake_bindings(), interval=1.0, monotonic=clock)
    source.start()
    sampler = Sampler(source, clock=clock)
    await sampler.run_once()
    clock.now += 1.5
    snapshot = await sampler.run_once()
    if listed:  # DCGM lists it, but refuses its groups: it is reported stale with the reason
        assert_only_lost_gpu_is_blind(snapshot, lost=0)
        assert snapshot.errors == {("sample", "gpu_is_lost"): 2}
    else:  # DCGM never listed it: the node is the other seven GPUs
        assert [g.index for g in snapshot.topology.gpus] == list(range(1, 8)) and snapshot.source_up
        assert snapshot.errors == {}


@pytest.mark.parametrize("listed", [True, False], ids=["listed-and-failing", "dropped-from-the-list"])
async def test_dcgm_lost_gpu_that_returns_is_watched_again(
    source: DcgmSource, engine: Any, clock: ManualClock, listed: bool
) -> None:
    """When the lost GPU comes back, its watches are re-created (after a backoff) and its values return."""
    sampler = await warm(source, clock, discovery_interval=3600.0)
    engine.lose(0, listed=listed)
    clock.now += 1.0
    assert 0 in (await sampler.run_once()).stale_gpus
    engine.restore(0)
    for _ in range(4):
        clock.now += 1.5
        snapshot = await sampler.run_once()
    assert snapshot.source_up and not snapshot.stale_gpus
    assert snapshot.samples[0].get(Entity(0, 1), Field.GR_ENGINE_ACTIVE) is not None
    assert snapshot.samples[1].get(Entity(1, 1), Field.GR_ENGINE_ACTIVE) == pytest.approx(0.7)


async def test_dcgm_gpu_ids_are_mapped_to_nvml_indexes(dgx: Simulator, clock: ManualClock) -> None:
    """DCGM numbers GPUs its own way: field 52 and the hierarchy give NVML's index, and values follow it."""
    module = hostengine()
    module.install(module.FakeHostEngine(dgx, clock=clock, gpu_ids={i: 7 - i for i in range(8)}))
    try:
        source = DcgmSource(fake_bindings(), interval=1.0, monotonic=clock)
        source.start()
        topology = await source.discover()
        assert topology == expected_topology(dgx)  # GPU 7 (MIG off, DCGM ID 0) is indexed through field 52
        clock.now += 1.2
        for gpu in topology.gpus:
            sample = await source.sample(gpu)
            truth = dgx.sample(gpu.index, T0 + 1.0)
            assert sample.get(Entity(gpu.index), Field.POWER) == pytest.approx(
                truth.get(Entity(gpu.index), Field.POWER)
            )
        assert sample.get(Entity(7), Field.GR_ENGINE_ACTIVE) == pytest.approx(0.65)
        await source.close()
    finally:
        module.install(None)


def test_dcgm_library_file_is_read_from_the_bindings() -> None:
    """The library named in errors is the one the bindings load (libdcgm.so.4 here; DCGM 3's name .so.3)."""
    assert library_file(fake_bindings().structs) == "libdcgm.so.4"


def test_dcgm3_bindings_without_their_library_name_libdcgm_so_3(tmp_path: Path) -> None:
    """With DCGM 3's bindings (which load libdcgm.so.3) a missing library is named as libdcgm.so.3."""
    for module in FAKE_DCGM_DIR.glob("*.py"):
        text = module.read_text()
        (tmp_path / module.name).write_text(text.replace("libdcgm.so.4", "libdcgm.so.3"))
    result = run_cli(
        "serve",
        "--source",
        "dcgm",
        "--dcgm-bindings",
        str(tmp_path),
        "--listen",
        "127.0.0.1:1",
        env={**os.environ, "FAKE_DCGM_NO_LIBRARY": "1"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DCGM library libdcgm.so.3 could not be loaded" in lines[0], result.stderr
    assert "libdcgm.so.4" not in lines[0]


HEALTH = (
    Field.SM_CLOCK,
    Field.MEMORY_CLOCK,
    Field.MEMORY_TEMPERATURE,
    Field.ENERGY,
    Field.PCIE_REPLAYS,
    Field.GPU_UTIL,
    Field.MEMORY_COPY_UTIL,
    Field.ENCODER_UTIL,
    Field.DECODER_UTIL,
    Field.MEMORY_RESERVED,
    Field.REMAPPED_ROWS_UNCORRECTABLE,
    Field.REMAPPED_ROWS_CORRECTABLE,
    Field.ROW_REMAP_FAILURE,
    Field.NVLINK_RATE,
)
PCIE = (Field.PCIE_TX_RATE, Field.PCIE_RX_RATE)


@pytest.mark.parametrize(
    ("field_id", "fld"),
    [
        (100, Field.SM_CLOCK),
        (140, Field.MEMORY_TEMPERATURE),
        (156, Field.ENERGY),
        (253, Field.MEMORY_RESERVED),
        (394, Field.REMAPPED_ROWS_CORRECTABLE),
        (449, Field.NVLINK_RATE),
        (1009, Field.PCIE_TX_RATE),
    ],
)
async def test_dcgm_field_not_supported_is_absent_with_reason(
    source: DcgmSource, engine: Any, clock: ManualClock, field_id: int, fld: Field
) -> None:
    """A field DCGM answers NOT_SUPPORTED for is absent on every entity, with the reason; the others stay."""
    engine.statuses[field_id] = fake_bindings().structs.DCGM_ST_NOT_SUPPORTED
    topology = await source.discover()
    clock.now = T0 + 2.2
    sample = await source.sample(topology.gpus[7])  # MIG disabled: every field is read on the GPU entity
    assert sample.unsupported == {fld: "not_supported"}
    assert fld not in sample.values[Entity(7)] and Field.POWER in sample.values[Entity(7)]


async def test_dcgm_health_fields_a_dcgm_cannot_watch_leave_the_rest(
    source: DcgmSource, engine: Any, clock: ManualClock
) -> None:
    """A DCGM that cannot watch the health fields (an older release): they are absent with its reason, the rest kept."""
    engine.unwatchable[253] = fake_bindings().structs.DCGM_ST_UNKNOWN_FIELD
    topology = await source.discover()
    clock.now = T0 + 2.2
    sample = await source.sample(topology.gpus[0])
    assert sample.unsupported == dict.fromkeys(HEALTH, "unknown_field")
    assert Field.POWER in sample.values[Entity(0)] and Field.GR_ENGINE_ACTIVE in sample.values[Entity(0, 1)]
    assert Field.PCIE_TX_RATE in sample.values[Entity(0, 1)]


async def test_dcgm_pcie_rates_the_profiler_cannot_add_keep_the_activity(
    source: DcgmSource, engine: Any, clock: ManualClock
) -> None:
    """When the profiling module cannot add the PCIe rates, they are absent with the reason; activity stays."""
    engine.unwatchable[1009] = fake_bindings().structs.DCGM_ST_PROFILING_MULTI_PASS
    topology = await source.discover()
    clock.now = T0 + 2.2
    sample = await source.sample(topology.gpus[1])
    refused = {Field.GPU_UTIL: "not_supported", Field.MEMORY_COPY_UTIL: "not_supported"}  # MIG on
    assert sample.unsupported == {**refused, **dict.fromkeys(PCIE, "profiling_multi_pass")}
    assert Field.GR_ENGINE_ACTIVE in sample.values[Entity(1, 1)] and Field.SM_CLOCK in sample.values[Entity(1)]
    assert not set(PCIE) & {f for values in sample.values.values() for f in values}
