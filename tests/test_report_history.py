"""`mig-exporter simulate-history`: a scenario's past as OpenMetrics, with the exporter's own series."""

from __future__ import annotations

import io
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.exposition.native import native_families
from exporter.exposition.render import Renderer
from exporter.exposition.template import Format
from exporter.model import Field
from exporter.sources.synthetic.history import Node, sample_times, scrape_offsets, write_openmetrics
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.snapshots import FIXED_TIME, fixed_snapshot

Labels = frozenset[tuple[str, str]]


def parse(text: str) -> dict[tuple[str, Labels], list[tuple[float, float]]]:
    """Series name and labels -> (timestamp, value) points, from OpenMetrics text."""
    out: dict[tuple[str, Labels], list[tuple[float, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            stamp = float(s.timestamp) if s.timestamp is not None else 0.0
            out[(s.name, frozenset(s.labels.items()))].append((stamp, s.value))
    return out


def history(scenario: str, times: list[float], instance: str = "node:9401") -> str:
    buffer = io.StringIO()
    write_openmetrics([Node(instance, Simulator(load(scenario)))], times, buffer)
    return buffer.getvalue()


def test_report_history_has_the_series_the_exporter_exposes() -> None:
    """Every history series is one the exporter exposes, with the same labels plus instance and job."""
    exposed = parse(Renderer([native_families]).render(fixed_snapshot("dgx-h100"), Format.OPENMETRICS).decode())
    written = parse(history("dgx-h100", [FIXED_TIME]))
    scrape_labels = ("instance", "job")
    stripped = {(name, frozenset((k, v) for k, v in labels if k not in scrape_labels)) for name, labels in written}
    assert stripped <= set(exposed)
    names = {name for name, _ in written}
    for required in (
        "mig_gpu_info",
        "mig_instance_info",
        "mig_instance_compute_slices",
        "mig_instance_memory_slices",
        "mig_instance_gr_engine_active_ratio",
        "mig_instance_memory_used_bytes",
        "mig_instance_memory_total_bytes",
    ):
        assert {(n, ls) for n, ls in exposed if n == required} <= stripped, required
    assert names >= {"mig_compute_instance_gr_engine_active_ratio", "mig_gpu_gr_engine_active_ratio"}
    assert all(("instance", "node:9401") in labels and ("job", "mig-exporter") in labels for _, labels in written)


def test_report_history_values_are_the_simulator_truth() -> None:
    """Activity samples are the mean of the simulator over the step's 15 s scrapes; memory is read at the sample."""
    times = sample_times(FIXED_TIME, FIXED_TIME + 3600, 300)
    written = parse(history("demo", times))
    sim = Simulator(load("demo"))
    offsets = scrape_offsets(300)
    assert len(offsets) == 20 and offsets[-1] == 0.0 and offsets[0] == -285.0
    checked = 0
    for (name, labels), points in written.items():
        d = dict(labels)
        assert [t for t, _ in points] == times
        for t, value in points:
            if name == "mig_instance_gr_engine_active_ratio":
                truth = [sim.gi_activity(int(d["gpu"]), int(d["gi"]), t + o)[Field.GR_ENGINE_ACTIVE] for o in offsets]
                assert value == pytest.approx(sum(truth) / len(truth), abs=1e-12)
                checked += 1
            elif name == "mig_instance_memory_used_bytes":
                assert value == sim.gi_memory_used(int(d["gpu"]), int(d["gi"]), t)
                checked += 1
    assert checked == 2 * 4 * len(times)


def test_report_history_averages_a_burst_pattern_over_each_step() -> None:
    """dgx-h100's 1g.10gb bursting at 95% for half of every 300 s reads 0.475 at a 5m step, not a constant 0.95."""
    times = sample_times(FIXED_TIME, FIXED_TIME + 6 * 3600, 300)
    written = parse(history("dgx-h100", times))
    key = next(
        k
        for k in written
        if k[0] == "mig_instance_gr_engine_active_ratio" and ("gi", "5") in k[1] and ("gpu", "0") in k[1]
    )
    assert {round(v, 12) for _, v in written[key]} == {0.475}
    # at a 15 s step each sample is one scrape: the burst shows as it is
    fine = parse(history("dgx-h100", sample_times(FIXED_TIME, FIXED_TIME + 600, 15)))
    assert {round(v, 12) for _, v in fine[key]} == {0.0, 0.95}


def test_report_history_cli_writes_backfillable_openmetrics(tmp_path: Path) -> None:
    """The subcommand writes two nodes' history for a window, distinct instance labels, ending in # EOF."""
    out = tmp_path / "h.om"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "exporter", "simulate-history", "--scenario", "demo", "--scenario", "demo"),
            *("--window", "1h", "--step", "15m", "--end", "2026-11-01T00:00:00Z", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.endswith("# EOF\n")
    series = parse(text)
    assert {dict(labels)["instance"] for _, labels in series} == {"demo:9401", "demo:9401-2"}
    stamps = {t for points in series.values() for t, _ in points}
    assert stamps == {1793491200.0 - k * 900 for k in range(5)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "2 weeks"], "--window: '2 weeks' is not a duration"),
        (["--step", "0m"], "--step: '0m' must be longer than zero"),
        (["--window", "1h", "--step", "2h"], "--step 2h is longer than --window 1h"),
        (["--end", "yesterday"], "--end: 'yesterday' is not a time"),
        (["--scenario", "nope"], "--scenario: scenario 'nope' is neither a built-in"),
    ],
)
def test_report_history_bad_flags_exit_2(args: list[str], message: str) -> None:
    """Bad simulate-history flags end with exit 2 and one line naming the flag."""
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "simulate-history", *args, "--out", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
