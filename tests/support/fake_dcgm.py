"""Access to the fake DCGM bindings in tests/fakes/dcgm, imported the way the source imports real ones."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from exporter.sources.dcgm.source import Bindings, load_bindings

FAKE_DCGM_DIR = Path(__file__).resolve().parent.parent / "fakes" / "dcgm"


def fake_bindings() -> Bindings:
    """The fake binding modules, loaded through the source's own loader (top-level module names)."""
    return load_bindings(str(FAKE_DCGM_DIR), environ={})


def hostengine() -> ModuleType:
    """The fake host-engine module behind the fake bindings (import after fake_bindings())."""
    fake_bindings()
    return importlib.import_module("fake_hostengine")
