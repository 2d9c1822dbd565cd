"""Connections and logs a client cannot abuse: a connection limit below the open-file limit that closes the
connection idle longest first, and one short, rate-limited log line per bad request."""

from __future__ import annotations

import os
import re
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.contract import defaults
from exporter.http.connections import FD_RESERVE
from tests.support.processes import LOOPBACK, ExporterProcess
from tests.support.tls import Pki
from tests.test_webconfig import https_get

pytestmark = pytest.mark.integration

MALFORMED = [
    b"GET /" + b"A" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"B" * 9000 + b"\r\n\r\n",
    b"\x00\x01\x02 not http at all " + b"C" * 5000 + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"D" * 4000 + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(100)) + b"\r\n",
]


def send(port: int, payload: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(payload)
        try:
            return sock.recv(200)
        except (TimeoutError, ConnectionResetError):
            return b""


def client_lines(log: str) -> list[str]:
    """What the exporter logged about its HTTP clients (its own lines, or aiohttp's, with their tracebacks)."""
    return [line for line in log.splitlines() if line and not re.search(r" INFO exporter[.:a-z]* ", line)]


@pytest.mark.parametrize("level", ["info", "error"])
def test_bad_requests_log_one_short_line_each_at_most_ten_per_10_seconds(tmp_path: Path, level: str) -> None:
    """50 malformed requests (8 KiB of attacker bytes each) log at most 10 one-line warnings at the default level,
    with none of those bytes beyond a short escaped excerpt, and nothing at --log-level error; a line written
    later says how many were left out."""
    args = ["--source", "synthetic", "--log-level", level]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as exporter:
        for i in range(50):
            assert send(exporter.port, MALFORMED[i % len(MALFORMED)]).startswith(b"HTTP/1.")
        assert "mig_gpu_info" in exporter.metrics()
        time.sleep(1.2)  # a line's worth of budget back
        send(exporter.port, MALFORMED[0])
        time.sleep(0.3)
        lines = client_lines(exporter.log())
    if level == "error":
        assert lines == []
        return
    assert 3 <= len(lines) <= 11, lines
    assert all(len(line) < 300 and "WARNING exporter.http.clients: bad request from 127.0.0.1: 4" in line
               for line in lines)  # fmt: skip
    assert not any(letter * 60 in line for line in lines for letter in "ABCD")
    assert re.search(r"\(\d+ similar lines left out\)$", lines[-1]), lines[-1]


def silent_connection(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=5)
    time.sleep(0.05)  # accepted in this order
    return sock


def closed_by_server(sock: socket.socket, wait: float = 2.0) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_past_the_connection_limit_the_connection_idle_longest_is_closed(tmp_path: Path) -> None:
    """With --http-max-connections 4 held by silent connections, a scrape closes the one opened first and is
    served; with the limit filled again, the next scrape closes the second oldest; the others stay open."""
    args = ["--source", "synthetic", "--http-max-connections", "4"]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as exporter:
        time.sleep(0.3)  # the readiness check's connection is gone
        silent = [silent_connection(exporter.port) for _ in range(4)]
        try:
            assert "mig_gpu_info" in exporter.metrics()
            assert closed_by_server(silent[0])
            assert not any(closed_by_server(s, 0.2) for s in silent[1:])
            silent.append(silent_connection(exporter.port))  # at the limit again
            assert "mig_gpu_info" in exporter.metrics()
            assert closed_by_server(silent[1])
            assert not any(closed_by_server(s, 0.2) for s in silent[2:])
        finally:
            for sock in silent:
                sock.close()
        assert "connection limit (4) reached: closed the connection idle longest" in exporter.log()


def keep_alive_scrape(sock: socket.socket) -> int:
    """One scrape on an open keep-alive connection; its status."""
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
    sock.settimeout(5)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    header, _, body = head.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", header, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return int(header.split()[1])


def test_a_scrapers_connection_outlasts_newer_strangers(tmp_path: Path) -> None:
    """Connections that were never answered with success are closed before a scraper's, even an older one:
    a flood of new connections displaces its own."""
    args = ["--source", "synthetic", "--http-max-connections", "4"]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as exporter:
        time.sleep(0.3)
        scraper = silent_connection(exporter.port)
        assert keep_alive_scrape(scraper) == 200
        silent = [silent_connection(exporter.port) for _ in range(3)]  # the scraper is idle longest now
        try:
            assert "mig_gpu_info" in exporter.metrics()
            assert closed_by_server(silent[0])
            assert keep_alive_scrape(scraper) == 200
        finally:
            for sock in [scraper, *silent]:
                sock.close()


def fd_limit(soft: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, soft))


@pytest.fixture
def silent_crowd() -> Iterator[list[socket.socket]]:
    crowd: list[socket.socket] = []
    yield crowd
    for sock in crowd:
        sock.close()


def test_a_crowd_of_silent_connections_cannot_lock_scrapes_out_at_the_open_file_limit(
    tmp_path: Path, silent_crowd: list[socket.socket]
) -> None:
    """At an open-file limit of 192, 400 silent connections: the exporter serves at most 64 connections (and
    says so), uses fewer descriptors than the limit, keeps answering scrapes, and logs no accept() flood."""
    exporter = ExporterProcess(
        ["--source", "synthetic"], log_path=tmp_path / "exporter.log", preexec_fn=lambda: fd_limit(192)
    )
    started = time.monotonic()
    with exporter:
        assert exporter.proc is not None
        for _ in range(400):
            silent_crowd.append(socket.create_connection((LOOPBACK, exporter.port), timeout=5))
        for _ in range(20):
            assert "mig_gpu_info" in exporter.metrics()
            time.sleep(0.05)
        open_files = len(os.listdir(f"/proc/{exporter.proc.pid}/fd"))
        assert open_files < 192 - FD_RESERVE // 2, open_files
    log = exporter.log()
    assert f"serving at most {192 - FD_RESERVE} connections, not {defaults.HTTP_MAX_CONNECTIONS}" in log
    assert "accept" not in log and "Traceback" not in log
    # The client log's token bucket: a burst of 10, then one line a second (a loaded machine takes longer), plus the
    # warning about the limit itself.
    elapsed = time.monotonic() - started
    assert len(client_lines(log)) <= 10 + int(elapsed) + 1, "\n".join(client_lines(log))


def test_connections_still_in_the_tls_handshake_count_and_can_be_closed(tmp_path: Path) -> None:
    """Over HTTPS, TCP connections that never start their handshake fill the limit but are closed for a scraper;
    a failed handshake (plain HTTP to the HTTPS port) is one short line."""
    pki = Pki(tmp_path)
    pki.issue("server", "127.0.0.1", server=True)
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    args = ["--source", "synthetic", "--web-config", str(config), "--http-max-connections", "2"]
    exporter = ExporterProcess(args, log_path=tmp_path / "exporter.log")
    exporter.url = exporter.url.replace("http://", "https://")
    exporter._ready = lambda: https_get(exporter.url + "/healthz", pki.ca.cert) == 200  # type: ignore[method-assign]
    with exporter:
        time.sleep(0.3)
        silent = [silent_connection(exporter.port) for _ in range(2)]
        try:
            assert https_get(exporter.url + "/metrics", pki.ca.cert) == 200
            assert closed_by_server(silent[0])
        finally:
            for sock in silent:
                sock.close()
        assert send(exporter.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == b""
        time.sleep(0.2)
        assert "WARNING exporter.http.clients: TLS handshake with 127.0.0.1 failed: http request" in exporter.log()
