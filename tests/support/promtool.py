"""`promtool check metrics` for exposition tests."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def check_metrics(text: str) -> tuple[int, list[str]]:
    """promtool's exit code and complaint lines for an exposition; skip (fail in CI) when promtool is missing."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    output = (result.stdout + result.stderr).decode()
    return result.returncode, [line for line in output.splitlines() if line.strip()]
