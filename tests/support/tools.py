"""External programs the tests need (Debian packages that .ci/run installs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def required_binary(name: str, package: str) -> str:
    """The path of `name`; skip with the fix where it is missing, but fail in CI, where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} not installed in CI: .ci/run should have installed the {package} package")
        pytest.skip(f"{name} not installed: apt-get install {package} (.ci/run does)")
    return path


ROOT = Path(__file__).resolve().parent.parent.parent


def copy_checkout(target: Path) -> Path:
    """The files git knows in this checkout (tracked, and new ones it does not ignore), copied as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target
