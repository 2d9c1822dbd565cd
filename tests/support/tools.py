"""External programs the tests need (Debian packages that .ci/run installs)."""

from __future__ import annotations

import os
import shutil

import pytest


def required_binary(name: str, package: str) -> str:
    """The path of `name`; skip with the fix where it is missing, but fail in CI, where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} not installed in CI: .ci/run should have installed the {package} package")
        pytest.skip(f"{name} not installed: apt-get install {package} (.ci/run does)")
    return path
