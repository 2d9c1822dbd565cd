"""README.md's shell blocks marked `<!-- runnable -->` run as written, and the Prometheus config they use is sound.

Each block runs with bash (-e, -u, pipefail) in a scratch copy of the checkout, with the commands of this
environment on PATH. The ports the README names (Prometheus' 9090, the exporter's 9401) are mapped to free
ports on 127.0.0.1, in the block and in the scratch copy's deploy/prometheus/prometheus.yml, so runs in
parallel do not meet. Whatever a block leaves running (`prometheus ... &`) is stopped with its process group.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from exporter.contract import defaults
from tests.support.processes import free_port
from tests.support.tools import copy_checkout, required_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
MARKED = re.compile(r"^<!-- runnable(?:: creates (?P<creates>[^>]+?))? -->\n```sh\n(?P<body>.*?)^```$", re.M | re.S)
PORTS = re.compile(r"\b(127\.0\.0\.1|localhost):(9090|9401)\b")


@dataclass(frozen=True)
class Block:
    line: int
    body: str
    creates: tuple[str, ...]

    def __str__(self) -> str:
        return f"README.md:{self.line}"


def runnable_blocks(text: str) -> list[Block]:
    """The shell blocks of `text` marked runnable, with the files their markers say they create."""
    return [
        Block(text.count("\n", 0, m.start()) + 1, m.group("body"), tuple((m.group("creates") or "").split()))
        for m in MARKED.finditer(text)
    ]


BLOCKS = runnable_blocks((ROOT / "README.md").read_text())


def test_the_readme_marks_its_runnable_blocks() -> None:
    """The quick start, the rules check and the capacity-review recipe are marked; no marker is misplaced."""
    text = (ROOT / "README.md").read_text()
    markers = re.findall(r"^<!-- runnable", text, re.M)
    assert len(markers) == len(BLOCKS), "a runnable marker not followed by a ```sh block"
    bodies = [b.body for b in BLOCKS]
    assert any("mig-exporter serve --source synthetic" in b for b in bodies)
    assert any("promtool test rules" in b for b in bodies)
    assert any("mig-exporter report" in b and "prometheus --config.file=" in b for b in bodies)


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_runnable_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    """The block exits 0 (every command in it succeeds) and leaves the files its marker names."""
    for tool in ("prometheus", "promtool"):
        required_binary(tool, "prometheus")
    required_binary("curl", "curl")
    checkout = copy_checkout(tmp_path / "checkout")
    ports = {"9090": str(free_port()), "9401": str(free_port())}

    def mapped(text: str) -> str:
        return PORTS.sub(lambda m: f"127.0.0.1:{ports[m.group(2)]}", text)

    config = checkout / "deploy" / "prometheus" / "prometheus.yml"
    config.write_text(mapped(config.read_text()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "output.log"
    with log.open("w") as output:  # a file, not a pipe: what the block leaves running keeps its stdout open
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", mapped(block.body)],
            cwd=checkout,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # what the block left in the background
            process.wait(timeout=30)
    assert process.returncode == 0, f"{block} failed:\n{log.read_text()[-3000:]}"
    for name in block.creates:
        assert (checkout / name).is_file() and (checkout / name).stat().st_size > 0, f"{block} did not create {name}"


def test_the_shipped_prometheus_config_is_valid_and_follows_the_contract(promtool: str) -> None:
    """The shipped config passes promtool, scrapes the exporter's port as the alerts' job and loads the rules."""
    path = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    checked = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(path.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == defaults.JOB
    assert [t.rsplit(":", 1)[1] for t in job["static_configs"][0]["targets"]] == [str(defaults.EXPORTER_PORT)]
    assert config["rule_files"] == ["mig-exporter.rules.yml"]


def test_the_layout_section_names_every_module_and_folder() -> None:
    """README's "Layout of the repository" names each top-level module and package of exporter/ and each folder."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout of the repository") :]
    layout = section[section.index("```\n") : section.index("```", section.index("```\n") + 4)]
    package = ROOT / "exporter"
    names = {p.name for p in package.glob("*.py") if not p.name.startswith("__")}
    names |= {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names |= {f"{line.split('/')[0]}/" for line in tracked.splitlines() if "/" in line and not line.startswith(".")}
    assert sorted(n for n in names if n not in layout) == []
