"""A real VictoriaMetrics single-node server on loopback, loaded with history through its Prometheus import API."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tests.support.processes import LOOPBACK, free_port, http_get, wait_until
from tests.support.tools import required_binary


def prometheus_text(openmetrics: Iterable[str]) -> bytes:
    """OpenMetrics lines with timestamps in seconds as Prometheus text with timestamps in milliseconds."""
    out = []
    for line in openmetrics:
        if not line.strip() or line.startswith("#"):
            continue
        head, value, stamp = line.rstrip("\n").rsplit(" ", 2)
        out.append(f"{head} {value} {round(float(stamp) * 1000)}\n")
    return "".join(out).encode()


class VictoriaMetrics:
    """`victoria-metrics` with its own storage directory; `load` imports a history file and makes it searchable."""

    def __init__(self, workdir: Path) -> None:
        self.binary = required_binary("victoria-metrics", "victoria-metrics")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VictoriaMetrics:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "victoria-metrics.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"-httpListenAddr={LOOPBACK}:{self.port}",
                    f"-storageDataPath={self.workdir / 'data'}",
                    "-retentionPeriod=100y",
                    "-search.latencyOffset=0s",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: http_get(self.url + "/health", timeout=1)[0] == 200, 30, "victoria-metrics ready")
        except TimeoutError:
            self.stop()
            raise
        return self

    def load(self, openmetrics: Path) -> None:
        """Import a history written by simulate-history, then flush it so queries see all of it."""
        with open(openmetrics) as lines:
            body = prometheus_text(lines)
        request = urllib.request.Request(f"{self.url}/api/v1/import/prometheus", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 204, response.status
        http_get(self.url + "/internal/force_flush", timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> VictoriaMetrics:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
