"""Backfill a real Prometheus TSDB with simulated history (promtool tsdb create-blocks-from openmetrics), and
record rules over it (promtool tsdb create-blocks-from rules)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from exporter.sources.synthetic.history import Node, write_openmetrics
from tests.support.processes import PrometheusServer

# Blocks this long keep promtool to a few passes over the file (its default, 2h, makes one pass per 2 hours).
MAX_BLOCK_DURATION = "360h"
RULE_BLOCK_SECONDS = 7200  # the blocks of `promtool tsdb create-blocks-from rules`
RULE_WORKERS = 4


def promtool_binary() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not installed (apt-get install prometheus)")
    return promtool


def backfill(
    nodes: Sequence[Node], times: Sequence[float], data_dir: Path, extra: str = "", keep: Path | None = None
) -> int:
    """Write the nodes' history (plus `extra` OpenMetrics families) and turn it into TSDB blocks in `data_dir`;
    the OpenMetrics file stays at `keep` when given."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not installed (apt-get install prometheus)")
    data_dir.mkdir(parents=True, exist_ok=True)
    source = keep or data_dir.parent / "history.om"
    with open(source, "w") as out:
        count = write_openmetrics(nodes, times, out)
    if extra:
        text = source.read_text()
        assert text.endswith("# EOF\n")
        source.write_text(text[: -len("# EOF\n")] + extra + "# EOF\n")
    result = subprocess.run(
        [
            *(promtool, "tsdb", "create-blocks-from", "openmetrics", f"--max-block-duration={MAX_BLOCK_DURATION}"),
            *("-q", str(source), str(data_dir)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool failed: {result.stderr[-2000:]}")
    if keep is None:
        source.unlink()
    return count


def record_rules(
    url: str, rules: Path, start: float, end: float, data_dir: Path, *, scratch: str = "rule-blocks"
) -> None:
    """Evaluate the recording rules of `rules` over [start, end] against the Prometheus at `url`, into `data_dir`
    (blocks that Prometheus loads when it starts on that directory); promtool writes them in `scratch` first."""
    promtool = promtool_binary()
    out = data_dir.parent / scratch
    result = subprocess.run(
        [
            *(promtool, "tsdb", "create-blocks-from", "rules", f"--url={url}", f"--start={int(start)}"),
            *(f"--end={int(end)}", f"--output-dir={out}", str(rules)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool failed: {result.stderr[-2000:]}")
    for block in out.iterdir():
        if (block / "meta.json").exists():
            shutil.move(str(block), data_dir / block.name)


def rule_layers(rules: Path) -> list[dict[str, Any]]:
    """The recording rules of a rules file in passes promtool can backfill one after the other: each rule in
    the pass after the last one recording a series it reads (promtool evaluates against the server, so a rule
    cannot read a series recorded in the same run). Each pass is a rules document of the groups it touches."""
    groups = yaml.safe_load(rules.read_text())["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    layer: dict[str, int] = {}
    pending = [r for g in groups for r in g["rules"] if "record" in r]
    while pending:
        ready = [r for r in pending if all(n in layer for n in _reads(r["expr"], recorded))]
        if not ready:
            raise ValueError(f"recording rules read each other in a cycle: {[r['record'] for r in pending]}")
        for rule in ready:
            layer[rule["record"]] = 1 + max((layer[n] for n in _reads(rule["expr"], recorded)), default=-1)
        pending = [r for r in pending if r["record"] not in layer]
    passes = []
    for depth in range(max(layer.values(), default=-1) + 1):
        chosen = [
            {**g, "rules": rules_}
            for g in groups
            if (rules_ := [r for r in g["rules"] if "record" in r and layer[r["record"]] == depth])
        ]
        passes.append({"groups": chosen})
    return passes


def _reads(expr: str, recorded: set[str]) -> set[str]:
    return {name for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if name in recorded}


def record_rule_layers(workdir: Path, rules: Path, start: float, end: float, extra_args: Sequence[str] = ()) -> None:
    """Backfill every recording rule of `rules` over [start, end] into the TSDB at `workdir`/data, pass by pass
    (rule_layers), each pass against a Prometheus started on the blocks of the passes before.

    The start goes back to a multiple of promtool's 2-hour blocks: promtool (2.42) stops a rule at the first
    block holding none of its group's evaluation times, so an hourly group starting late in a block would get
    no samples at all. Evaluations before the data begins record nothing.
    """
    start = (int(start) // RULE_BLOCK_SECONDS) * RULE_BLOCK_SECONDS
    for depth, layer in enumerate(rule_layers(rules)):
        paths = []
        for part in range(RULE_WORKERS):  # promtool evaluates one rule at a time: a few run side by side
            groups = [{**g, "rules": g["rules"][part::RULE_WORKERS]} for g in layer["groups"]]
            if any(g["rules"] for g in groups):
                paths.append(workdir / f"rules-pass-{depth}-{part}.yml")
                paths[-1].write_text(yaml.safe_dump({"groups": [g for g in groups if g["rules"]]}, sort_keys=False))
        with PrometheusServer(workdir, extra_args=extra_args) as prom, ThreadPoolExecutor(len(paths)) as pool:
            runs = [
                pool.submit(record_rules, prom.url, path, start, end, workdir / "data", scratch=f"rule-blocks-{i}")
                for i, path in enumerate(paths)
            ]
            for run in runs:
                run.result()
