"""Real processes for integration tests: the exporter CLI and a Prometheus server, on loopback only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """GET a URL; return status, headers and body (also for 4xx/5xx)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def terminate(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """Stop a child process: SIGTERM, then SIGKILL if it has not exited after `timeout` seconds; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=5)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns a truthy value; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError) as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


class ExporterProcess:
    """`python -m exporter serve ...` as a child process on a free loopback port."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        headers: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.args = [sys.executable, "-m", "exporter", "serve", "--listen", f"{LOOPBACK}:{self.port}", *args]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.headers = headers or {}  # sent with the readiness check (credentials, behind basic auth)
        self.preexec_fn = preexec_fn  # run in the child before it starts (resource limits)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 20.0) -> ExporterProcess:
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,  # noqa: PLW1509 - only setrlimit
        )
        try:
            wait_until(self._ready, ready_timeout, f"exporter on {self.url}/readyz")
        except TimeoutError:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"exporter exited with {self.proc.returncode}: {self.log()}")
        return http_get(self.url + "/readyz", self.headers, timeout=1)[0] == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def metrics(self) -> str:
        status, _, body = http_get(self.url + "/metrics", self.headers)
        assert status == 200, body
        return body.decode()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        return terminate(self.proc)

    def __enter__(self) -> ExporterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def prometheus_binary() -> str | None:
    """The prometheus server binary (Debian's package), if installed."""
    return shutil.which("prometheus")


class PrometheusServer:
    """A real Prometheus on loopback, scraping the given targets, with optional rule files."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        rule_files: Sequence[Path] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": "mig-exporter", "static_configs": [{"targets": list(targets)}]}]
            if targets
            else [],
        }
        if rule_files:
            config["rule_files"] = [str(p) for p in rule_files]
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.args = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--web.enable-lifecycle",
            *extra_args,
        ]
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        try:
            wait_until(lambda: http_get(self.url + "/-/ready", timeout=1)[0] == 200, 30, "prometheus ready")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"prometheus did not start: {self.log_path.read_text()[-2000:]}") from None
        return self

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; return `data`, failing on an API error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        status, _, body = http_get(url, timeout=30)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise AssertionError(f"{path} {params}: HTTP {status}: {doc.get('error', body[:300])}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for_series(self, expr: str, timeout: float = 30.0, min_count: int = 1) -> list[dict[str, Any]]:
        return wait_until(lambda: (r := self.query(expr)) and len(r) >= min_count and r, timeout, f"series {expr}")  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=15)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
