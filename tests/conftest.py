"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator
from tests.support.browser import chromium_command
from tests.support.tools import required_binary

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def dgx() -> Simulator:
    """A fresh simulator of the dgx-h100 scenario."""
    return Simulator(load("dgx-h100"))


@pytest.fixture
def demo() -> Simulator:
    """A fresh simulator of the demo scenario."""
    return Simulator(load("demo"))


@pytest.fixture
def artifacts() -> Iterator[Path]:
    """A folder for files a test leaves for people to look at (screenshots); not committed."""
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS


@pytest.fixture
def needs_prometheus() -> None:
    """Skip, naming the fix, where the prometheus binary is missing; in CI (.ci/run installs it) fail instead."""
    required_binary("prometheus", "prometheus")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The headless chromium command line; skips (fails in CI) where chromium cannot run."""
    return chromium_command(tmp_path_factory.mktemp("chromium-profile"))


@pytest.fixture(scope="session")
def promtool() -> str:
    """The promtool binary; skipped where missing, except in CI, where .ci/run installs it."""
    return required_binary("promtool", "prometheus")
