"""Loading the fake `pynvml` (tests/fakes/pynvml.py) in-process, fresh for each test."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

FAKES = Path(__file__).resolve().parent.parent / "fakes"
_serial = itertools.count()


def load_fake_pynvml() -> ModuleType:
    """A new instance of the fake module, under its own name so the real `pynvml` stays importable."""
    name = f"fake_pynvml_{next(_serial)}"
    spec = importlib.util.spec_from_file_location(name, FAKES / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module
