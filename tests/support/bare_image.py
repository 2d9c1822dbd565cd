"""A Python environment limited to what a bare GPU machine image offers, for child processes.

That image has Python with only the packages in BARE_IMAGE_PACKAGES (and their own dependencies);
the checkout is run with PYTHONPATH=. and nothing is pip-installed. `bare_image_env` writes a
`sitecustomize` module that hides every other third-party module, so importing one fails as it
would there (ModuleNotFoundError) and `importlib.util.find_spec` answers None, and returns the
environment that puts it first on PYTHONPATH.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent.parent

BARE_IMAGE_PACKAGES = (
    "aiohttp",
    "prometheus-client",
    "PyYAML",
    "nvidia-ml-py",
    "grpcio",
    "protobuf",
    "pytest",
    "hypothesis",
    "torch",
)
CHECKOUT_PACKAGES = ("exporter", "tests", "bench")

_SITECUSTOMIZE = '''"""Hides top-level modules a bare GPU image does not have (see tests/support/bare_image.py)."""
import os
import sys

_ALLOWED = frozenset(os.environ["BARE_IMAGE_ALLOWED"].split(","))


class _Hide:
    """Wraps a meta-path finder so that it finds nothing outside the standard library and the allowed modules."""

    def __init__(self, inner):
        self._inner = inner

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in _ALLOWED and top not in sys.stdlib_module_names:
            return None  # as if not installed: `import` raises ModuleNotFoundError, find_spec() answers None
        return self._inner.find_spec(name, path, target)

    def __getattr__(self, attribute):
        return getattr(self._inner, attribute)


sys.meta_path[:] = [_Hide(finder) for finder in sys.meta_path]
'''


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement).lower()


def bare_image_distributions(packages: tuple[str, ...] = BARE_IMAGE_PACKAGES) -> set[str]:
    """The installed distributions among `packages` and everything they depend on (no extras)."""
    seen: set[str] = set()
    todo = [_name(p) for p in packages]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (torch): nothing of it can be imported anyway
        seen.add(name)
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_name(requirement.name))
    return seen


def allowed_modules(packages: tuple[str, ...] = BARE_IMAGE_PACKAGES) -> set[str]:
    """Top-level module names importable on the bare image: those of its distributions, and the checkout's."""
    distributions = bare_image_distributions(packages)
    modules = {
        module
        for module, owners in metadata.packages_distributions().items()
        if any(_name(owner) in distributions for owner in owners)
    }
    return modules | set(CHECKOUT_PACKAGES)


def bare_image_env(
    folder: Path, *, extra_path: tuple[Path, ...] = (), without: tuple[str, ...] = ()
) -> dict[str, str]:
    """Environment for a child process limited to the bare image; `without` also blocks those modules."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    allowed = allowed_modules() - set(without)
    path = os.pathsep.join(str(p) for p in (folder, *extra_path, ROOT))
    return {**os.environ, "PYTHONPATH": path, "BARE_IMAGE_ALLOWED": ",".join(sorted(allowed))}
