"""YAML files written by users (`--config`, scenarios, web-configs), read within bounds.

One loader for every YAML file the exporter reads. YAML can describe far more than it spells out (an alias
bomb of a few hundred bytes expands to billions of values; deep nesting overflows the parser's stack), and
PyYAML builds every node before anyone looks at it, so the bounds are checked while reading and
composing, before a single Python object is built:

- the file: at most `MAX_BYTES`, UTF-8 text (so `/dev/zero` or a binary file is one clear error);
- the document: at most `MAX_DEPTH` levels deep and `MAX_NODES` values, counted with every alias expanded;
  an alias inside its own anchor is refused;
- the values: a key given twice in one mapping (strict, as Go's YAML decoding is), a key that is not a
  scalar, an integer of more than `MAX_INT_DIGITS` digits, a string holding a lone surrogate (it cannot
  be written out as UTF-8, so it would break every scrape that shows it), and values YAML's own types
  cannot hold (`2024-13-45`) are refused.

Errors are `YamlError`, one line that starts with the line number where one is known; the caller adds the
file it came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exporter.excerpt import excerpt

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 50_000
MAX_INT_DIGITS = 100

_MERGE_TAG = "tag:yaml.org,2002:merge"
_SURROGATE = re.compile("[\ud800-\udfff]")


class YamlError(ValueError):
    """A YAML file that cannot be used; one line, without the file's name."""


def read(path: str | Path, max_bytes: int = MAX_BYTES) -> str:
    """The text of a file of at most `max_bytes` UTF-8 bytes; raises YamlError saying why not."""
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise YamlError(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise YamlError(f"larger than {_size(max_bytes)}, more than any settings, scenario or web-config file needs")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})") from None


def parse(text: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """The document in `text` (None when empty), built only once it is known to be within bounds."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, max_depth, max_nodes)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, max_depth, max_nodes)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        what = "" if isinstance(exc, _BoundError) else "invalid YAML: "
        raise YamlError(f"{where}{what}{_one_line(problem)}") from None
    except yaml.reader.ReaderError as exc:
        raise YamlError(
            f"character {exc.position + 1}: invalid YAML: unacceptable character {exc.character:#06x}"
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {_one_line(str(exc))}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load(path: str | Path, max_bytes: int = MAX_BYTES) -> Any:
    """read() then parse()."""
    return parse(read(path, max_bytes))


class _BoundError(yaml.MarkedYAMLError):
    """A document outside the bounds (its message needs no "invalid YAML" in front)."""


def _fail(node_or_mark: Node | yaml.Mark, problem: str) -> _BoundError:
    mark = node_or_mark.start_mark if isinstance(node_or_mark, Node) else node_or_mark
    return _BoundError(problem=problem, problem_mark=mark)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts depth and nodes while composing, and refuses the values listed above."""

    def __init__(self, text: str, max_depth: int, max_nodes: int) -> None:
        super().__init__(text)
        self._max_depth, self._max_nodes = max_depth, max_nodes
        self._depth = self._nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > self._max_depth or self._nodes > self._max_nodes:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                if self._depth > self._max_depth:
                    raise _fail(mark, f"nested deeper than {self._max_depth} levels")
                raise _fail(mark, f"more than {self._max_nodes:,} values")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # e.g. a timestamp with month 13
            raise _fail(node, f"invalid value {excerpt(getattr(node, 'value', ''))}: {_one_line(str(exc))}") from None

    def construct_scalar(self, node: ScalarNode | MappingNode) -> Any:
        value = super().construct_scalar(node)
        if isinstance(value, str) and (found := _SURROGATE.search(value)):
            raise _fail(node, f"a string holds a lone surrogate ({found.group()!r}), which is not Unicode text")
        return value

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *base` merges; its keys may be overridden
                continue
            if not isinstance(key_node, ScalarNode):
                raise _fail(key_node, "a mapping key must be a scalar")
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _fail(key_node, f"key {excerpt(key)} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        if len(node.value) > MAX_INT_DIGITS:
            raise _fail(node, f"an integer of more than {MAX_INT_DIGITS} digits")
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _check_expansion(root: Node, max_depth: int, max_nodes: int) -> None:
    """Refuse a node graph that, with its aliases expanded, is deeper or larger than the bounds, or cyclic.

    Each node is measured once (an alias shares its anchor's node), so this takes time in proportion to
    the document as written, and the recursion is as deep as the document as written (at most max_depth).
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values once expanded, levels below it)
    active: set[int] = set()

    def measure(node: Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in active:
            raise _fail(node, "an alias refers to a node that contains it")
        known = measured.get(key)
        if known is None:
            active.add(key)
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = node.value
            elif isinstance(node, MappingNode):
                children = [n for pair in node.value for n in pair]
            count, height = 1, 0
            for child in children:
                child_count, child_height = measure(child, depth + 1)
                count, height = count + child_count, max(height, child_height + 1)
                if count > max_nodes:
                    raise _fail(node, f"expands to more than {max_nodes:,} values (through aliases)")
            active.discard(key)
            known = measured[key] = (count, height)
        if depth + known[1] > max_depth:
            raise _fail(node, f"nested deeper than {max_depth} levels (through aliases)")
        return known

    measure(root, 1)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n:,} bytes"
