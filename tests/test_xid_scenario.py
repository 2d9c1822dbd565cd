"""Scenario `xids:` entries: validated with the entry named, counted by the synthetic source at their time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.model import Entity, Field, XidKey
from exporter.sampler import Sampler
from exporter.sources.synthetic.scenario import ScenarioError, XidSpec, parse
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource

NODE = """\
gpus:
  - board: h100-80gb
    instances:
      - {profile: 3g.40gb, gi: 1, compute_instances: [{profile: 1c.3g.40gb}, {profile: 2c.3g.40gb}]}
      - {profile: 4g.40gb, gi: 2}
  - {board: h100-80gb, mig: false}
"""


def test_xid_entries_load_with_their_scope() -> None:
    """GPU-wide, GPU-instance and compute-instance XIDs load as given; `after` defaults to 0."""
    text = (
        NODE
        + "xids:\n  - {gpu: 0, xid: 43, gi: 1, ci: 1, after: 5}\n  - {gpu: 0, xid: 94, gi: 2}\n  - {gpu: 1, xid: 79}\n"
    )
    assert parse(text).xids == (
        XidSpec(gpu=0, xid=43, after=5.0, gi=1, ci=1),
        XidSpec(gpu=0, xid=94, after=0.0, gi=2, ci=None),
        XidSpec(gpu=1, xid=79, after=0.0, gi=None, ci=None),
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{gpu: 2, xid: 79}", "xids[0].gpu: GPU 2 does not exist (the scenario has GPUs 0..1)"),
        ("{gpu: 0}", "xids[0].xid: missing required key"),
        ("{gpu: 0, xid: 0}", "xids[0].xid: 0 must be at least 1"),
        ("{gpu: 0, xid: 70000}", "xids[0].xid: 70000 is not an XID code (1..65535)"),
        ("{gpu: 0, xid: '79'}", "xids[0].xid: expected an integer, got '79'"),
        ("{gpu: 0, xid: 79, gi: 3}", "xids[0].gi: GPU 0 has no GPU instance 3 (it has: 1, 2)"),
        ("{gpu: 1, xid: 79, gi: 1}", "xids[0].gi: GPU 1 has no GPU instance 1 (it has: none: MIG is disabled)"),
        ("{gpu: 0, xid: 79, gi: 1, ci: 2}", "xids[0].ci: GPU instance 1 has no compute instance 2 (it has 0..1)"),
        ("{gpu: 0, xid: 79, ci: 0}", "xids[0].ci: a compute instance needs its GPU instance: give gi as well"),
        ("{gpu: 0, xid: 79, after: -1}", "xids[0].after: -1 is out of range"),
        ("{gpu: 0, xid: 79, at: 3}", "xids[0].at: unknown key (allowed: after, ci, gi, gpu, xid)"),
    ],
)
def test_bad_xid_entries_name_the_file_and_entry(entry: str, message: str) -> None:
    """Each bad `xids:` entry fails with one message naming the file and the entry's key."""
    with pytest.raises(ScenarioError, match="^" + re.escape(f"node.yaml: {message}")):
        parse(NODE + f"xids:\n  - {entry}\n", origin="node.yaml")


def test_xids_that_are_not_a_list_are_refused() -> None:
    with pytest.raises(ScenarioError, match=re.escape("n.yaml: xids: expected a list, got dict")):
        parse(NODE + "xids: {gpu: 0, xid: 79}\n", origin="n.yaml")


def test_a_bad_xid_entry_exits_2_with_one_line(tmp_path: Path) -> None:
    """serve with a bad `xids:` entry: exit code 2, one stderr line naming the file and the entry, no traceback."""
    path = tmp_path / "node.yaml"
    path.write_text(NODE + "xids:\n  - {gpu: 0, xid: 79, gi: 7}\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--source", "synthetic", "--scenario", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (f"mig-exporter: error: {path}: xids[0].gi: GPU 0 has no GPU instance 7 (it has: 1, 2)\n")


async def test_synthetic_source_counts_xids_when_their_time_comes() -> None:
    """XIDs due now are counted on their scope at the next cycle; one due in an hour is not yet."""
    text = NODE + "xids:\n  - {gpu: 0, xid: 43, gi: 1, ci: 1}\n  - {gpu: 0, xid: 43, gi: 1, ci: 1}\n"
    text += "  - {gpu: 1, xid: 79}\n  - {gpu: 0, xid: 95, gi: 2, after: 3600}\n"
    sampler = Sampler(SyntheticSource(Simulator(parse(text))), interval=1.0)
    snapshot = await sampler.run_once()
    assert snapshot.xids.counts == {XidKey(0, 43, 1, 1): 2, XidKey(1, 79): 1}
    assert snapshot.xids.last == {0: 43, 1: 79}
    assert snapshot.samples[0].get(Entity(0), Field.XID_ERRORS) == 2
    assert snapshot.samples[1].get(Entity(1), Field.XID_ERRORS) == 1
