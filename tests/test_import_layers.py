"""Imports point one way: model <- mig <- sources <- sampler <- exposition <- http <- cli."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "exporter"

# A module may import only modules of a lower rank (or its own top-level module's parts).
RANKS = {
    "exporter": 0,  # the package itself: __version__
    "exporter.model": 0,
    "exporter.timespec": 0,
    "exporter.units": 0,  # GiB and percentages as people read them
    "exporter.svg": 0,  # SVG drawing (the slice maps and the report's charts)
    "exporter.failurelog": 1,  # logging of repeated failures (reads timespec)
    "exporter.excerpt": 0,  # short escaped quotes of untrusted values, for messages
    "exporter.yamlfile": 1,  # the bounded YAML loader every file the exporter reads goes through
    "exporter.contract": 1,  # metric names, thresholds, defaults (reads model.Field)
    "exporter.mig": 1,
    "exporter.sources": 2,
    "exporter.kubernetes": 2,
    "exporter.report": 2,
    "exporter.sampler": 3,
    "exporter.exposition": 4,
    "exporter.http": 5,
    "exporter.cli": 6,
    "exporter.__main__": 7,
}


def top_level(module: str) -> str:
    """`exporter.sources.nvml` -> `exporter.sources`."""
    return ".".join(module.split(".")[:2])


def imports() -> dict[str, set[str]]:
    """Every module of the package and the exporter modules it imports."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found = out.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "exporter":
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "exporter")
    return out


def test_every_top_level_module_has_a_rank() -> None:
    """A new top-level module must be placed in the layering before it can be imported from."""
    assert {top_level(m) for m in imports()} <= RANKS.keys()


def test_imports_point_one_way() -> None:
    """No module imports one of the same or a higher rank outside its own top-level module."""
    violations = [
        f"{module} imports {target}"
        for module, targets in imports().items()
        for target in targets
        if top_level(target) != top_level(module) and RANKS[top_level(target)] >= RANKS[top_level(module)]
    ]
    assert violations == []
