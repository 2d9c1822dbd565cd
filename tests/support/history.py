"""Backfill a real Prometheus TSDB with simulated history (promtool tsdb create-blocks-from openmetrics)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from exporter.sources.synthetic.history import Node, write_openmetrics

# Blocks this long keep promtool to a few passes over the file (its default, 2h, makes one pass per 2 hours).
MAX_BLOCK_DURATION = "360h"


def backfill(nodes: Sequence[Node], times: Sequence[float], data_dir: Path, extra: str = "") -> int:
    """Write the nodes' history (plus `extra` OpenMetrics families) and turn it into TSDB blocks in `data_dir`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not installed (apt-get install prometheus)")
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / "history.om"
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
    source.unlink()
    return count
