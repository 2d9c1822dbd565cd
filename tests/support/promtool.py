"""`promtool check metrics` for exposition tests."""

from __future__ import annotations

import subprocess

from tests.support.tools import required_binary


def check_metrics(text: str) -> tuple[int, list[str]]:
    """promtool's exit code and complaint lines for an exposition; skip (fail in CI) when promtool is missing."""
    promtool = required_binary("promtool", "prometheus")
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    output = (result.stdout + result.stderr).decode()
    return result.returncode, [line for line in output.splitlines() if line.strip()]
