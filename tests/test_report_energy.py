"""The capacity review's energy column: kWh per instance and the idle instances' share, from the energy rule's series.

A real Prometheus holds a day of a two-instance node with known estimated power (300 W on the busy 3g, 50 W on
the idle 4g, as the recording rule would have recorded them) and a node without the rule's series.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from exporter.contract import recorded
from exporter.sources.synthetic.history import Node, sample_times
from exporter.sources.synthetic.scenario import load, parse
from exporter.sources.synthetic.simulator import Simulator
from tests.support.history import backfill
from tests.support.processes import PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("needs_prometheus")]

STEP = 300
WINDOW = 86400
NODE = """\
name: energy
gpus:
  - board: h100-80gb
    instances:
      - {profile: 3g.40gb, gi: 1, activity: 0.7, memory: 0.5}
      - {profile: 4g.40gb, gi: 2, activity: idle}
"""
WATTS = {("1", "3g.40gb"): 300.0, ("2", "4g.40gb"): 50.0}


@dataclass
class Stack:
    prom: PrometheusServer
    end: int
    steps: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("energy")
    end = math.floor(time.time() / STEP) * STEP - STEP
    times = sample_times(end - WINDOW, end, STEP)
    estimate = f"# TYPE {recorded.INSTANCE_POWER_ESTIMATE} gauge\n" + "".join(
        f'{recorded.INSTANCE_POWER_ESTIMATE}{{instance="node-a:9401",job="mig-exporter",gpu="0",gi="{gi}",'
        f'profile="{profile}"}} {watts} {int(t)}\n'
        for (gi, profile), watts in WATTS.items()
        for t in times
    )
    nodes = [Node("node-a:9401", Simulator(parse(NODE))), Node("node-b:9401", Simulator(load("demo")))]
    backfill(nodes, times, workdir / "data", extra=estimate)
    with PrometheusServer(workdir) as prom:
        yield Stack(prom, end, len(times))


def report(stack: Stack, node: str, output: str) -> str:
    args = ["--prometheus", stack.prom.url, "--end", str(stack.end), "--window", "1d", "--step", "5m"]
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "report", *args, "--output", output, "--match", f'instance="{node}"'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_energy_per_instance_is_the_estimated_power_over_the_steps(stack: Stack) -> None:
    """Each instance's kWh is its estimated power times the review's steps; the idle 4g spent 50/350 of it."""
    doc: dict[str, Any] = json.loads(report(stack, "node-a:9401", "json"))
    kwh = {(str(i["gi"]), i["profile"]): i["energy_kwh_estimate"] for i in doc["instances"]}
    hours = stack.steps * STEP / 3600  # one step of 5 minutes per sample of the day, its first step included
    assert kwh == {key: pytest.approx(watts * hours / 1000, rel=1e-12) for key, watts in WATTS.items()}
    assert doc["energy"]["kwh_estimate"] == pytest.approx(350 * hours / 1000, rel=1e-12)
    assert doc["energy"]["idle_share"] == pytest.approx(50 / 350, rel=1e-12)
    text = report(stack, "node-a:9401", "md")
    assert f"Estimated energy: {350 * hours / 1000:,.2f} kWh over the window, 14.3% of it by idle instances." in text
    assert "energy (est.)" in text and f"{300 * hours / 1000:,.2f} kWh" in text


def test_without_the_energy_rule_the_review_says_so(stack: Stack) -> None:
    """A node whose server records no energy estimate: energy absent (null), and the report names the rule."""
    doc: dict[str, Any] = json.loads(report(stack, "node-b:9401", "json"))
    assert doc["energy"] == {"kwh_estimate": None, "idle_share": None}
    assert all(i["energy_kwh_estimate"] is None for i in doc["instances"])
    text = report(stack, "node-b:9401", "md")
    assert "Energy: not estimated (the energy recording rule instance_gpu_gi:mig_instance_power_watts:estimate" in text
