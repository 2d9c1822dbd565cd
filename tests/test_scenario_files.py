"""Scenario files: valid ones load, bad ones fail with one message naming the key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf"])
@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("gpus: [{instances: [{profile: 1g.10gb, activity: V}]}]", "gpus[0].instances[0].activity"),
        ("gpus: [{instances: [{profile: 1g.10gb, memory: V}]}]", "gpus[0].instances[0].memory"),
        ("gpus: [{mig: false, activity: {pattern: diurnal, mean: V, amplitude: 0.1}}]", "gpus[0].activity.mean"),
        ("gpus: [{mig: false}]\nfaults: [{gpu: 0, kind: hang, after: V}]", "faults[0].after"),
    ],
)
def test_levels_and_times_must_be_finite(template: str, key: str, value: str) -> None:
    """NaN and infinite levels or times are refused naming the key (NaN passed every range check, and showed as 0)."""
    with pytest.raises(ScenarioError, match=re.escape(f"bad.yaml: {key}: expected a finite number")):
        parse(template.replace("V", value), origin="bad.yaml")


@settings(max_examples=80, deadline=None)
@given(
    key=st.sampled_from(["name", "driver_version"]),
    value=st.text(st.characters(exclude_categories=()), max_size=80),  # surrogates included
)
def test_strings_that_reach_labels_are_printable_text(key: str, value: str) -> None:
    """name and driver_version (a label of every GPU) are short printable text: a surrogate, a newline or a
    control character is refused, so a scrape can always encode them."""
    text = f"{key}: {json.dumps(value)}\ngpus: [{{mig: false}}]\n"  # JSON strings are YAML double-quoted strings
    try:
        scenario = parse(text, origin="s.yaml")
    except ScenarioError as exc:
        assert str(exc).startswith("s.yaml: ") and "\n" not in str(exc)
        return
    loaded = getattr(scenario, key)
    assert loaded == value and loaded.isprintable() and 0 < len(loaded) <= 64
    loaded.encode("utf-8")


def test_a_surrogate_in_a_scenario_fails_at_start_not_at_every_scrape(tmp_path: Path) -> None:
    """A lone surrogate in driver_version is one error at start (it used to make every scrape 500)."""
    path = tmp_path / "s.yaml"
    path.write_text('driver_version: "550.\\ud800"\ngpus: [{mig: false}]\n')
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--source", "synthetic", "--scenario", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"mig-exporter: error: {path}: line 1: a string holds a lone surrogate ('\\ud800'), which is not Unicode text\n"
    )


@pytest.mark.parametrize(
    "content",
    [
        "prometheus: $2y$10$HPZdVEno3fy1ArJt9X/XVed4jYINqtm6o./U3Lh74LlgS60laJ7ce\n",
        "root:*:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n",
        "[Unit]\nDescription=secret-service\n",
    ],
    ids=["password-hashes", "shadow", "ini"],
)
def test_a_file_that_is_not_a_scenario_is_named_but_never_quoted(tmp_path: Path, content: str) -> None:
    """--scenario pointed at some other file (a password file, say) says it is not a scenario, quoting none of it."""
    path = tmp_path / "other"
    path.write_text(content)
    with pytest.raises(ScenarioError) as info:
        load(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    words = {w for w in re.split(r"[\s:$=\[\]]+", content) if len(w) >= 4}
    assert not any(w in message.removeprefix(f"{path}: ") for w in words), message


def test_a_fault_reason_is_a_short_token() -> None:
    """A 100,000-character fault reason (a label value of every error counter) is refused, briefly."""
    text = "gpus: [{mig: false}]\nfaults: [{gpu: 0, kind: fail, reason: " + "x" * 100_000 + "}]\n"
    with pytest.raises(ScenarioError) as info:
        parse(text, origin="f.yaml")
    assert "faults[0].reason: expected a short token" in str(info.value) and len(str(info.value)) < 300
