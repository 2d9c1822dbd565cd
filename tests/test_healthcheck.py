"""`mig-exporter healthcheck`, the container's HEALTHCHECK: it probes /healthz where and how `serve` serves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli.healthcheck import url_for
from exporter.cli.settings import resolve
from tests.support.processes import ExporterProcess, free_port
from tests.support.tls import Pki


def healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_the_url_follows_the_listen_address_and_tls(tmp_path: Path) -> None:
    """A wildcard address is probed on loopback (IPv6 too); a web-config with TLS makes it https."""
    assert url_for(resolve({}, environ={}))[0] == "http://127.0.0.1:9401/healthz"
    assert url_for(resolve({"listen": "[::]:9500"}, environ={}))[0] == "http://[::1]:9500/healthz"
    assert url_for(resolve({}, environ={"MIG_EXPORTER_LISTEN": "10.0.0.5:9402"}))[0] == "http://10.0.0.5:9402/healthz"
    Pki(tmp_path).issue("server", "127.0.0.1", server=True)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    url, context = url_for(resolve({"web_config": str(web)}, environ={}))
    assert url == "https://127.0.0.1:9401/healthz" and context is not None


def test_nothing_listening_is_exit_1_with_one_line() -> None:
    """With no exporter on the port the check fails with one line naming the URL."""
    port = free_port()
    result = healthcheck("--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"healthcheck: http://127.0.0.1:{port}/healthz:" in result.stderr


def test_bad_settings_are_exit_2() -> None:
    """A bad value, from a flag or a variable, is the usual one-line error, exit 2."""
    assert healthcheck("--timeout", "soon").returncode == 2
    result = healthcheck(env={"MIG_EXPORTER_LISTEN": "nowhere"})
    assert result.returncode == 2 and "MIG_EXPORTER_LISTEN: invalid value 'nowhere'" in result.stderr


@pytest.mark.integration
def test_a_running_exporter_is_healthy_over_http_and_https(tmp_path: Path) -> None:
    """Against a real `serve` the check exits 0, also when the exporter serves TLS only."""
    with ExporterProcess(["--source", "synthetic"]) as exporter:
        assert healthcheck(env={"MIG_EXPORTER_LISTEN": f"0.0.0.0:{exporter.port}"}).returncode == 0
    Pki(tmp_path).issue("server", "127.0.0.1", server=True)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    tls = ExporterProcess(["--source", "synthetic", "--web-config", str(web)])
    tls._ready = lambda: healthcheck("--listen", f"127.0.0.1:{tls.port}", "--web-config", str(web)).returncode == 0  # type: ignore[method-assign]
    with tls:
        plain = healthcheck("--listen", f"127.0.0.1:{tls.port}")
        assert plain.returncode == 1  # http against a TLS port does not pass
