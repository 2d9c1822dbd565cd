"""Headless Chromium for the browser tests (the landing page, the HTML report)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

# Flags for a headless run on a machine with a closed network: no GPU, no sandbox (root), no background fetches.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def _unusable(reason: str) -> NoReturn:
    """Skip with the reason, or fail in CI, where .ci/run installs chromium."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run should have installed chromium")
    pytest.skip(f"{reason} (apt-get install chromium; .ci/run does)")


def chromium_command(profile: Path) -> list[str]:
    """The chromium command line with a fresh profile, once it has shown it can render a page here."""
    binary = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if binary is None:
        _unusable("no chromium binary on PATH")
    command = [binary, *FLAGS, f"--user-data-dir={profile}"]
    try:
        probe = subprocess.run([*command, "--dump-dom", "data:text/html,<p>ok</p>"], capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        _unusable("chromium did not answer within 120 s")
    if b"<p>ok</p>" not in probe.stdout:
        _unusable(f"chromium cannot run headless here: {probe.stderr.decode(errors='replace')[-300:]}")
    return command
