"""A fleet of dgx-h100 nodes in a real Prometheus: raw history, pod attribution on some nodes, the rules' results.

One node's history comes from `mig-exporter simulate-history`; equal scenarios give equal values, so its series
are written again under each node's instance label (families kept contiguous, as OpenMetrics wants), keeping
only the families the fleet dashboard's rules read. promtool turns that into blocks, then records the 5m
rollups, the fleet aggregates and the hourly rollups over it, pass by pass (record_rule_layers).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from exporter.contract import families as fam
from exporter.model import Field
from exporter.sources.synthetic.scenario import load
from tests.support.history import MAX_BLOCK_DURATION, promtool_binary, record_rule_layers

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "deploy" / "prometheus" / "mig-exporter.rules.yml"
SCENARIO = "dgx-h100"
TEMPLATE = "node-template:9401"
STEP = 300  # the raw history's step: one sample per 5m rollup window
# What the fleet dashboard's rules read (the GPU-wide and compute-instance families are left out).
FAMILIES = (
    fam.INSTANCE_INFO.series,
    fam.INSTANCE_COMPUTE_SLICES.series,
    fam.INSTANCE_ACTIVITY[Field.GR_ENGINE_ACTIVE].series,
    fam.INSTANCE_MEMORY_USED.series,
    fam.INSTANCE_MEMORY_TOTAL.series,
)
# On nodes with pod attribution: (GPU, profile, first compute instance's pattern) of the GPU instances pods hold, and
# their namespace.
HELD = (("1", "3g.40gb", "Idle", "ml"), ("0", "1g.10gb", "Steady", "web"), ("4", "7g.80gb", "Steady", "ml"))


@dataclass(frozen=True)
class Holder:
    gpu: str
    gi: str
    namespace: str
    pod: str


def holders() -> list[Holder]:
    """The GPU instances pods hold on an attributed node: an idle 3g.40gb (ml's waste), two busy ones."""
    scenario = load(SCENARIO)
    out = []
    for gpu, profile, pattern, namespace in HELD:
        inst = next(
            i
            for i in scenario.gpus[int(gpu)].instances
            if i.profile.name == profile and type(i.compute_instances[0].activity).__name__ == pattern
        )
        out.append(Holder(gpu, str(inst.gi), namespace, f"{namespace}-{gpu}-{inst.gi}"))
    return out


def node_names(first: int, count: int) -> list[str]:
    return [f"node-{i:04d}:9401" for i in range(first, first + count)]


def _families(path: Path) -> list[list[str]]:
    families: list[list[str]] = []
    with open(path) as lines:
        for line in lines:
            if line.startswith("# TYPE"):
                families.append([line])
            elif not line.startswith("# EOF"):
                families[-1].append(line)
    return [f for f in families if f[0].split()[2] in FAMILIES]


def _pods(names: Sequence[str], times: Sequence[int]) -> Iterator[str]:
    yield f"# TYPE {fam.INSTANCE_POD_INFO.series} gauge\n"
    for name in names:
        for h in holders():
            labels = (
                f'instance="{name}",job="mig-exporter",gpu="{h.gpu}",gi="{h.gi}",ci="0",'
                f'namespace="{h.namespace}",pod="{h.pod}",container="main"'
            )
            yield "".join(f"{fam.INSTANCE_POD_INFO.series}{{{labels}}} 1 {t}\n" for t in times)
    yield f"# TYPE {fam.KUBELET_UP.series} gauge\n"
    for name in names:
        yield "".join(f'{fam.KUBELET_UP.series}{{instance="{name}",job="mig-exporter"}} 1 {t}\n' for t in times)


def write_fleet(out: Path, names: Sequence[str], attributed: Sequence[str], days: float, end: int) -> None:
    """`days` of history up to `end` for the nodes `names`, of which `attributed` report pods."""
    one = out.with_suffix(".one.om")
    node = ("--scenario", SCENARIO, "--instance", TEMPLATE)
    window = ("--window", f"{int(days * 24)}h", "--step", f"{STEP}s", "--end", str(end))
    subprocess.run(
        [sys.executable, "-m", "exporter", "simulate-history", *node, *window, "--out", str(one)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    families = _families(one)
    one.unlink()
    label = f'instance="{TEMPLATE}"'
    times = [end - k * STEP for k in range(int(days * 86400 / STEP), -1, -1)]
    with open(out, "w") as f:
        for family in families:
            f.write(family[0])
            for name in names:
                f.writelines(line.replace(label, f'instance="{name}"') for line in family[1:])
        if attributed:
            f.writelines(_pods(attributed, times))
        f.write("# EOF\n")


def create_blocks(source: Path, data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(promtool_binary(), "tsdb", "create-blocks-from", "openmetrics"),
            *(f"--max-block-duration={MAX_BLOCK_DURATION}", "-q", str(source), str(data)),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    source.unlink()


def fleet_rules(workdir: Path) -> Path:
    """The shipped recording rules the fleet dashboard reads, and the rules those read, in their groups."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = {r["record"]: r for g in groups for r in g["rules"] if "record" in r}
    dashboard = (ROOT / "dashboards" / "mig-fleet.json").read_text()
    wanted = {name for name in rules if name in dashboard}
    while True:
        more = {name for name in rules for w in wanted if name in rules[w]["expr"]} - wanted
        if not more:
            break
        wanted |= more
    chosen = [{**g, "rules": [r for r in g["rules"] if r.get("record") in wanted]} for g in groups]
    path = workdir / "fleet-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [g for g in chosen if g["rules"]]}, sort_keys=False))
    return path


RETENTION = ["--storage.tsdb.retention.time=60d"]


def build(workdir: Path, parts: Sequence[tuple[Sequence[str], Sequence[str], float]], end: int) -> None:
    """Backfill `workdir`/data: each part (node names, of them those with pods, days up to `end`), then the rules
    over the longest part's days."""
    for i, (names, attributed, days) in enumerate(parts):
        source = workdir / f"history-{i}.om"
        write_fleet(source, names, attributed, days, end)
        create_blocks(source, workdir / "data")
    days = max(d for _, _, d in parts)
    record_rule_layers(workdir, fleet_rules(workdir), end - days * 86400, end, RETENTION)
