"""A Python environment limited to what a bare GPU machine image offers, for child processes.

That image has Python with only the packages in BARE_IMAGE_PACKAGES (and their own dependencies);
the checkout is run with PYTHONPATH=. and nothing is pip-installed. `bare_image_env` returns an
environment whose PYTHONPATH starts with bare_site/, whose `sitecustomize` hides every other
third-party module and distribution: importing one fails as it would there (ModuleNotFoundError),
`importlib.util.find_spec` answers None and pytest loads no plugin the image lacks.
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
# What torch itself requires (its wheel's Requires-Dist, CUDA libraries left out), so the image has these even
# though they are not installed here alongside a torch: Jinja2 (the landing page's templates) among them.
TORCH_REQUIRES = ("filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec")

SITE = Path(__file__).resolve().parent / "bare_site"  # its sitecustomize hides what the image lacks


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
            if name == "torch":  # not installed here: its own requirements still are there
                todo.extend(_name(r) for r in TORCH_REQUIRES)
            continue  # nothing of it can be imported here anyway
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


def bare_image_env(*, extra_path: tuple[Path, ...] = (), without: tuple[str, ...] = ()) -> dict[str, str]:
    """Environment for a child process limited to the bare image; `without` also hides those modules."""
    allowed = allowed_modules() - set(without)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(p) for p in (SITE, *extra_path, ROOT)),
        "BARE_IMAGE_ALLOWED": ",".join(sorted(allowed)),
        "BARE_IMAGE_DISTRIBUTIONS": ",".join(sorted(bare_image_distributions())),
    }
