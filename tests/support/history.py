"""Past data for a real Prometheus: a scenario's history rendered by the exporter's own families, backfilled.

Alert and dashboard expressions look back an hour or a day; a test cannot wait that long, so it writes
the simulator's history (a pure function of time) into TSDB blocks with `promtool tsdb
create-blocks-from openmetrics` before Prometheus starts, then lets Prometheus scrape the live exporter.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Mapping
from itertools import chain
from pathlib import Path

from exporter.exposition import exporter_families, native_families
from exporter.model import Snapshot
from exporter.sources.synthetic.simulator import Simulator


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def snapshot_at(sim: Simulator, t: float) -> Snapshot:
    """What the synthetic source would have published at time t."""
    topology = sim.topology()
    return Snapshot(
        source="synthetic",
        topology=topology,
        samples={g.index: sim.sample(g.index, t) for g in topology.gpus},
        timestamp=t,
        duration=0.01,
        source_up=True,
        errors={},
    )


def history_openmetrics(sim: Simulator, start: float, end: float, step: float, labels: Mapping[str, str]) -> str:
    """OpenMetrics text of every series the exporter serves, sampled every `step` seconds in [start, end]."""
    families: dict[str, tuple[str, list[str]]] = {}
    extra = [f'{k}="{_escape(v)}"' for k, v in labels.items()]
    for i in range(math.floor((end - start) / step) + 1):
        t = start + i * step
        snapshot = snapshot_at(sim, t)
        for family in chain(native_families(snapshot), exporter_families(snapshot)):
            kind, lines = families.setdefault(family.name, (family.type, []))
            for sample in family.samples:
                pairs = ",".join([*extra, *(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))])
                lines.append(f"{sample.name}{{{pairs}}} {sample.value!r} {t:.3f}")
    out = []
    for name, (kind, lines) in families.items():
        if lines:
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def backfill(text: str, data_dir: Path, workdir: Path) -> None:
    """Write OpenMetrics `text` into TSDB blocks under `data_dir` (a Prometheus --storage.tsdb.path)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not installed (apt-get install prometheus)")
    source = workdir / "history.om"
    source.write_text(text)
    data_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {result.stdout[-1000:]}{result.stderr[-1000:]}")
