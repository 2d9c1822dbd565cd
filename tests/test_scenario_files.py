"""Scenario files: valid ones load, bad ones fail with one message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.sources.synthetic.scenario import ScenarioError, load, parse

GOOD = """
name: small
seed: 3
gpus:
  - board: h100-80gb
    instances:
      - {profile: 4g.40gb, start: 0, gi: 5, activity: {pattern: bursty, high: 0.8}, memory: 0.5}
      - profile: 3g.40gb
        compute_instances:
          - {profile: 2c.3g.40gb, activity: 0.6}
          - {profile: 1c.3g.40gb}
  - {mig: false, activity: {pattern: ramp, start: 0, end: 1, period: 60}}
"""


def test_valid_file_loads_with_explicit_ids_and_automatic_placement(tmp_path: Path) -> None:
    """Explicit start and gi are kept; the rest is placed where a valid layout exists."""
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    scenario = load(str(path))
    gpu = scenario.gpus[0]
    assert [(i.profile.name, i.start, i.gi) for i in gpu.instances] == [("4g.40gb", 0, 5), ("3g.40gb", 4, 1)]
    assert [c.profile for c in gpu.instances[1].compute_instances] == ["2c.3g.40gb", "1c.3g.40gb"]
    assert scenario.gpus[1].mig is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpus: []", "gpus: a scenario needs at least one GPU"),
        ("{}", "gpus: missing required key"),
        ("gpus: [{bord: h100-80gb}]", "gpus[0].bord: unknown key (allowed: activity, board, instances"),
        ("gpus: [{board: b200}]", "gpus[0].board: unknown GPU board 'b200'"),
        ("gpus: [{instances: [{profile: 3g.50gb}]}]", "gpus[0].instances[0].profile: unknown MIG profile '3g.50gb'"),
        (
            "gpus: [{instances: [{profile: 4g.40gb}, {profile: 4g.40gb}]}]",
            "gpus[0].instances: 4g.40gb + 4g.40gb has no valid placement on h100-80gb",
        ),
        ("gpus: [{instances: [{profile: 3g.40gb, start: 2}]}]", "3g.40gb cannot start at memory slice 2"),
        (
            "gpus: [{instances: [{profile: 1g.10gb, activity: 1.5}]}]",
            "gpus[0].instances[0].activity: 1.5 is out of range",
        ),
        (
            "gpus: [{instances: [{profile: 1g.10gb, activity: {pattern: wave}}]}]",
            "gpus[0].instances[0].activity.pattern: unknown pattern 'wave'",
        ),
        (
            "gpus: [{instances: [{profile: 1g.10gb, activity: {pattern: steady}}]}]",
            "gpus[0].instances[0].activity.level: missing required key",
        ),
        (
            "gpus: [{instances: [{profile: 3g.40gb, compute_instances: [{profile: 2c.3g.40gb}, {profile: 2c.3g.40gb}]}]}]",  # noqa: E501
            "compute instances need 4 compute slices, 3g.40gb has 3",
        ),
        ("gpus: [{instances: [{profile: 1g.10gb, gi: 2}, {profile: 1g.10gb, gi: 2}]}]", "id 2 is used twice"),
        ("gpus: [{mig: false, instances: [{profile: 1g.10gb}]}]", "a GPU with mig: false has no instances"),
        ("gpus: [{mig: maybe}]", "gpus[0].mig: expected true or false"),
        ("gpus: [a, b", "invalid YAML"),
        ("- 1\n- 2", "expected a mapping, got list"),
    ],
)
def test_bad_scenario_names_the_problem(text: str, message: str) -> None:
    """Each kind of mistake produces one line that names the key path and the problem."""
    with pytest.raises(ScenarioError) as info:
        parse(text, origin="bad.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("bad.yaml:")
    assert "\n" not in str(info.value)


def test_missing_file_names_builtins() -> None:
    """A name that is neither built-in nor a file lists the built-ins."""
    with pytest.raises(ScenarioError, match=r"neither a built-in \(demo, dgx-h100\) nor a readable file"):
        load("/nonexistent/scenario.yaml")
