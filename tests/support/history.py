"""Backfill a real Prometheus TSDB with simulated history (promtool tsdb create-blocks-from openmetrics), and
record rules over it (promtool tsdb create-blocks-from rules)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from exporter.sources.synthetic.history import Node, write_openmetrics

# Blocks this long keep promtool to a few passes over the file (its default, 2h, makes one pass per 2 hours).
MAX_BLOCK_DURATION = "360h"


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


def record_rules(url: str, rules: Path, start: float, end: float, data_dir: Path) -> None:
    """Evaluate the recording rules of `rules` over [start, end] against the Prometheus at `url`, into `data_dir`
    (blocks that Prometheus loads when it starts on that directory)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not installed (apt-get install prometheus)")
    out = data_dir.parent / "rule-blocks"
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
