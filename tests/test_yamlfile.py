"""Hostile YAML: every file the exporter reads is bounded in size, depth and alias expansion before it is built.

The same loader reads --config, scenario and web-config files; through each, a bad file is one line and
exit code 2 (and, for a live web-config reload, the last good config stays: see test_webconfig.py).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import yamlfile
from exporter.yamlfile import YamlError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def alias_bomb(levels: int, fanout: int) -> str:
    """`levels` anchors, each a list of `fanout` aliases of the one before: fanout**levels values expanded."""
    lines = ["a0: &a0 [x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def nested(depth: int, kind: str) -> str:
    if kind == "flow-list":
        return "[" * depth + "]" * depth
    if kind == "flow-map":
        return "{a: " * depth + "1" + "}" * depth
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"  # block mappings


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def expanded_values(levels: int, fanout: int) -> int:
    """How many values alias_bomb(levels, fanout) holds with every alias expanded."""
    sizes = [2]  # a0: the list and its item
    for _ in range(levels):
        sizes.append(1 + fanout * sizes[-1])
    return 1 + sum(1 + size for size in sizes)  # the top mapping, then a key and its list per anchor


@FUZZ
@given(levels=st.integers(1, 12), fanout=st.integers(2, 12))
def test_alias_expansion_is_bounded(levels: int, fanout: int) -> None:
    """A document that expands through aliases past MAX_NODES values is refused, naming the line; one within loads."""
    started, rss = time.monotonic(), peak_rss_mb()
    try:
        doc = yamlfile.parse(alias_bomb(levels, fanout))
    except YamlError as exc:
        assert expanded_values(levels, fanout) > yamlfile.MAX_NODES, exc
        assert "values (through aliases)" in str(exc) and str(exc).startswith("line ")
    else:
        assert expanded_values(levels, fanout) <= yamlfile.MAX_NODES
        assert len(doc) == levels + 1
    assert time.monotonic() - started < 2
    assert peak_rss_mb() - rss < 50


@FUZZ
@given(depth=st.integers(1, 20_000), kind=st.sampled_from(["flow-list", "flow-map", "block-map"]))
def test_nesting_is_bounded(depth: int, kind: str) -> None:
    """Nesting past MAX_DEPTH levels is one error naming the line, not a RecursionError; shallower loads."""
    try:
        yamlfile.parse(nested(depth, kind))
    except YamlError as exc:
        assert depth >= yamlfile.MAX_DEPTH - 1, exc
        assert "nested deeper than 32 levels" in str(exc)
    else:
        assert depth < yamlfile.MAX_DEPTH


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    """A recursive alias would make a list that contains itself: refused."""
    with pytest.raises(YamlError, match="line 1: an alias refers to a node that contains it"):
        yamlfile.parse("&a [*a]")
    with pytest.raises(YamlError, match="contains it"):
        yamlfile.parse("a: &a {b: *a}")


@FUZZ
@given(digits=st.integers(101, 20_000), form=st.sampled_from(["decimal", "hex", "negative", "base-60"]))
def test_huge_integers_are_refused_before_they_are_built(digits: int, form: str) -> None:
    """An integer of thousands of digits (int() refuses them, base 60 takes quadratic time) is one error."""
    number = {
        "decimal": "1" * digits,
        "hex": "0x" + "f" * digits,
        "negative": "-" + "7" * digits,
        "base-60": "1" + ":59" * (digits // 3 + 1),
    }[form]
    with pytest.raises(YamlError, match=r"line 1: an integer of more than 100 digits"):
        yamlfile.parse("a: " + number)


@FUZZ
@given(
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.text(st.characters(categories=("L", "N")), max_size=5),
)
def test_lone_surrogates_are_refused(surrogates: str, rest: str) -> None:
    """A double-quoted escape can make a lone surrogate, which no UTF-8 writer accepts: refused, naming the line."""
    escaped = "".join(f"\\u{ord(c):04x}" for c in surrogates)
    text = f'k: "{rest}{escaped}"'
    with pytest.raises(YamlError, match=r"^line 1: a string holds a lone surrogate \('\\ud[89a-f]"):
        yamlfile.parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: 2\na: 3\n", "line 3: key 'a' is given twice"),
        ("? [a]\n: 1\n", "line 1: a mapping key must be a scalar"),
        ("when: 2024-13-45\n", "line 1: invalid value '2024-13-45': month must be in 1..12"),
        ("a: \x00\n", "character 4: invalid YAML: unacceptable character 0x0000"),
        ("a\n---\nb\n", "line 2: invalid YAML: expected a single document in the stream, but found another document"),
        ("a: *" + "n" * 5000 + "\n", "line 1: invalid YAML: found undefined alias 'nnnnn"),
    ],
)
def test_other_bad_documents_are_one_line(text: str, message: str) -> None:
    """Duplicate and non-scalar keys, impossible dates, control characters, several documents: one short line."""
    with pytest.raises(YamlError) as info:
        yamlfile.parse(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value) and len(str(info.value)) < 250


def test_merge_keys_and_shared_anchors_still_work() -> None:
    """Ordinary anchors, aliases and `<<` merges load as before."""
    doc = yamlfile.parse("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nagain: *b\n")
    assert doc == {"base": {"x": 1, "y": 2}, "other": {"x": 1, "y": 3}, "again": {"x": 1, "y": 2}}


def test_reading_is_bounded(tmp_path: Path) -> None:
    """A file past MAX_BYTES (or endless, like /dev/zero) and one that is not UTF-8 are refused when read."""
    with pytest.raises(YamlError, match="larger than 1 MiB"):
        yamlfile.read("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 110_000)
    with pytest.raises(YamlError, match="larger than 1 MiB"):
        yamlfile.read(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(YamlError, match=r"not UTF-8 text \(byte 0xe9 at offset 9\)"):
        yamlfile.read(latin)
    with pytest.raises(YamlError, match="cannot read: No such file or directory"):
        yamlfile.read(tmp_path / "missing.yaml")


def hostile_files(folder: Path) -> dict[str, Path]:
    """Files of each hostile kind, written to `folder`."""
    files = {
        "alias-bomb": alias_bomb(9, 9),
        "deep": nested(100_000, "flow-list"),
        "huge-int": "interval: " + "9" * 5000 + "\n",
        "surrogate": 'name: "\\udc80"\n',
        "duplicate": "interval: 5\ninterval: 1\n",
    }
    out = {}
    for name, text in files.items():
        out[name] = folder / f"{name}.yaml"
        out[name].write_text(text)
    latin = folder / "latin1.yaml"
    latin.write_bytes(b"name: \xff\xfe\n")
    out["not-utf-8"] = latin
    out["dev-zero"] = Path("/dev/zero")
    return out


def one_gib_of_memory() -> None:
    """In the child: at most 1 GiB of address space, so a file that would take gigabytes fails loudly."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("kind", ["alias-bomb", "deep", "huge-int", "surrogate", "duplicate", "not-utf-8", "dev-zero"])
@pytest.mark.parametrize("flag", ["--config", "--scenario", "--web-config"])
def test_each_file_flag_refuses_hostile_yaml_in_one_line(tmp_path: Path, flag: str, kind: str) -> None:
    """--config, --scenario and --web-config each end a hostile file with exit 2 and one line, fast, in 1 GiB."""
    path = hostile_files(tmp_path)[kind]
    started = time.monotonic()
    serve = [sys.executable, "-m", "exporter", "serve", "--source", "synthetic", "--listen", "127.0.0.1:1"]
    result = subprocess.run(
        [*serve, flag, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=one_gib_of_memory,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mig-exporter: error: "), result.stderr[-2000:]
    assert str(path) in lines[0] and len(lines[0]) < 400
    assert time.monotonic() - started < 20
