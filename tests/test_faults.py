"""Faults survived: hung and failing GPUs, re-partitions, restarts, hostile HTTP clients, scrape floods."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from exporter.http.server import build_app
from exporter.sampler import Sampler
from exporter.sources.base import GpuError
from exporter.sources.synthetic.scenario import ScenarioError, parse
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.faults import FaultySource
from tests.support.processes import LOOPBACK, ExporterProcess, http_get, wait_until

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


def gpus_with(body: str, name: str) -> set[int]:
    """The gpu label values that carry `name`."""
    return {int(g) for g in re.findall(rf'^{name}\{{[^}}]*gpu="(\d+)"', body, re.M)}


async def scrape(client: TestClient) -> str:  # type: ignore[type-arg]
    response = await asyncio.wait_for(client.get("/metrics", headers={"Accept-Encoding": "identity"}), 10)
    assert response.status == 200
    return await response.text()


async def scrape_until(client: TestClient, predicate: Callable[[str], bool], what: str) -> str:  # type: ignore[type-arg]
    """Scrape every 50 ms until `predicate(body)` holds; fail after 10 s naming `what`."""
    for _ in range(200):
        body = await scrape(client)
        if predicate(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {what}")


async def test_hung_driver_call_marks_only_that_gpu_stale(aiohttp_client: ClientFactory, dgx: Simulator) -> None:
    """A sampling call stuck in a driver thread: scrapes still answer, source_up is 0, the other GPUs report."""
    source = FaultySource(SyntheticSource(dgx))
    source.block.add(3)
    try:
        client = await aiohttp_client(build_app(Sampler(source, interval=0.1, deadline=0.1)))
        body = await scrape_until(client, lambda b: 'reason="hung",stage="sample"' in b, "the hung GPU counted")
        assert 'mig_exporter_source_up{source="synthetic"} 0.0' in body
        assert gpus_with(body, "mig_gpu_info") == set(range(8))  # identity stays
        assert gpus_with(body, "mig_gpu_power_watts") == set(range(8)) - {3}  # values of the hung GPU go
        assert 3 not in gpus_with(body, "mig_instance_gr_engine_active_ratio")
        assert {0, 1, 2, 4, 5, 6} <= gpus_with(body, "mig_instance_gr_engine_active_ratio")
        assert source.sample_calls[3] == 1  # never called again while stuck: no thread pile-up
        for _ in range(20):  # the event loop is free: every endpoint answers
            assert (await asyncio.wait_for(client.get("/healthz"), 5)).status == 200
        assert (await client.get("/readyz")).status == 200
        source.block.clear()
        source.unblock.set()
        body = await scrape_until(client, lambda b: 3 in gpus_with(b, "mig_gpu_power_watts"), "GPU 3 back")
        assert 'mig_exporter_source_up{source="synthetic"} 1.0' in body
    finally:
        source.unblock.set()


async def test_hung_discovery_is_not_started_again(dgx: Simulator) -> None:
    """A discovery stuck in a driver thread keeps the last layout and is not retried while stuck: no thread pile-up."""
    source = FaultySource(SyntheticSource(dgx))
    sampler = Sampler(source, interval=0.05, discovery_interval=0.05, deadline=0.05)
    try:
        await sampler.run_once()
        source.block_discovery = True
        for _ in range(10):
            await asyncio.sleep(0.06)
            snapshot = await sampler.run_once()
        assert source.discover_calls == 2
        assert len(snapshot.topology.gpus) == 8 and len(snapshot.samples) == 8  # sampling goes on
        assert not snapshot.source_up
        assert snapshot.errors[("discover", "hung")] >= 8
    finally:
        source.unblock.set()
        await sampler.close()


async def test_gpu_raising_is_counted_and_isolated(aiohttp_client: ClientFactory, dgx: Simulator) -> None:
    """One GPU raising a GPU error and another raising a bug: both counted by reason, the rest report fully."""
    source = FaultySource(SyntheticSource(dgx))
    source.raise_for[1] = lambda: GpuError("GPU is lost", reason="gpu_lost")
    source.raise_for[5] = lambda: RuntimeError("bug in a binding")
    client = await aiohttp_client(build_app(Sampler(source, interval=0.1)))
    body = await scrape_until(client, lambda b: 'reason="exception"' in b, "the exception counted")
    assert 'mig_exporter_errors_total{reason="gpu_lost",stage="sample"}' in body
    assert gpus_with(body, "mig_gpu_power_watts") == set(range(8)) - {1, 5}
    assert gpus_with(body, "mig_gpu_info") == set(range(8))


async def test_repartition_mid_run_replaces_the_series(aiohttp_client: ClientFactory, demo: Simulator) -> None:
    """A MIG re-partition while running: the new instances appear and the old ones' series vanish, no restart."""
    client = await aiohttp_client(build_app(Sampler(SyntheticSource(demo), interval=0.1, discovery_interval=3600)))
    before = await scrape(client)
    assert before.count("mig_instance_info{") == 4
    layout = parse("gpus:\n  - instances:\n      - {profile: 7g.80gb, gi: 9, activity: 0.8}\n").gpus[0].instances
    demo.repartition(0, layout)
    after = await scrape_until(client, lambda b: 'profile="7g.80gb"' in b, "the new layout")
    assert after.count("mig_instance_info{") == 1
    assert 'gi="9"' in after and 'profile="3g.40gb"' not in after and 'profile="1g.10gb"' not in after
    assert "mig_exporter_topology_changes_total 1.0" in after  # a re-partition is no error
    assert "mig_exporter_errors_total{" not in after


def test_fault_keys_are_validated() -> None:
    """Scenario `faults:` entries with a bad GPU, kind, time or reason fail naming the key path."""
    gpus = "gpus:\n  - {board: h100-80gb, mig: false}\n"
    cases = {
        "faults:\n  - {gpu: 1, kind: hang}\n": "faults[0].gpu: GPU 1 does not exist",
        "faults:\n  - {gpu: 0, kind: melt}\n": "faults[0].kind: unknown fault 'melt' (valid: hang, fail)",
        "faults:\n  - {gpu: 0, kind: fail, after: -1}\n": "faults[0].after: -1 is out of range",
        "faults:\n  - {gpu: 0, kind: fail, reason: 'a b'}\n": "faults[0].reason: expected a short token",
        "faults:\n  - {kind: fail}\n": "faults[0].gpu: missing required key",
        "faults: {gpu: 0}\n": "faults: expected a list",
    }
    for text, message in cases.items():
        with pytest.raises(ScenarioError, match=re.escape(message)):
            parse(gpus + text, origin="f.yaml")


FAULTY_NODE = """\
name: faulty
gpus:
  - {board: h100-80gb, instances: [{profile: 7g.80gb, activity: 0.5}]}
  - {board: h100-80gb, instances: [{profile: 7g.80gb, activity: 0.5}]}
  - {board: h100-80gb, instances: [{profile: 7g.80gb, activity: 0.5}]}
faults:
  - {gpu: 1, kind: hang}
  - {gpu: 2, kind: fail, reason: xid_79, after: 0, duration: 3}
"""


@pytest.mark.integration
def test_scenario_faults_in_the_real_daemon(tmp_path: Path) -> None:
    """The real daemon with a hung GPU and a GPU failing for 3 s: it serves, counts both, and GPU 2 recovers."""
    scenario = tmp_path / "faulty.yaml"
    scenario.write_text(FAULTY_NODE)
    args = ["--source", "synthetic", "--scenario", str(scenario), "--interval", "0.2"]
    with ExporterProcess(args, log_path=tmp_path / "exporter.log") as exporter:
        body = exporter.metrics()
        assert 'mig_exporter_source_up{source="synthetic"} 0.0' in body
        assert 'mig_exporter_errors_total{reason="xid_79",stage="sample"}' in body
        body = wait_until(
            lambda: (b := exporter.metrics()) and gpus_with(b, "mig_gpu_power_watts") == {0, 2} and b,
            20,
            "GPU 2 recovered, GPU 1 still stale",
        )
        assert 'reason="hung",stage="sample"' in body
        assert gpus_with(body, "mig_gpu_info") == {0, 1, 2}


@pytest.mark.integration
def test_restart_under_scrape(tmp_path: Path) -> None:
    """Scrapes running while the exporter stops and a new one starts on the same port: no error but refused
    connections in the gap, every answer whole, a clean exit code."""
    first = ExporterProcess(["--source", "synthetic", "--scenario", "dgx-h100"], log_path=tmp_path / "a.log")
    outcomes: list[str] = []
    stop = threading.Event()

    def scraper() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, _, body = http_get(first.url + "/metrics", timeout=5)
            except OSError as exc:
                outcomes.append(f"refused:{type(exc).__name__}")
                time.sleep(0.01)
                continue
            complete = body.rstrip().endswith(b"}") or b"mig_exporter_field_supported" in body
            outcomes.append("ok" if status == 200 and complete else f"bad:{status}")

    with first:
        thread = threading.Thread(target=scraper)
        thread.start()
        try:
            wait_until(lambda: outcomes.count("ok") >= 20, 20, "scrapes of the first exporter")
            assert first.stop() == 0
            served_before = len(outcomes)
            second = ExporterProcess(["--source", "synthetic", "--scenario", "dgx-h100"], log_path=tmp_path / "b.log")
            second.port, second.url = first.port, first.url
            second.args = list(first.args)  # the same --listen port
            with second:
                wait_until(lambda: outcomes[served_before:].count("ok") >= 20, 20, "scrapes of the second exporter")
                assert second.stop() == 0
        finally:
            stop.set()
            thread.join(10)
    bad = [o for o in outcomes if o != "ok" and not o.startswith("refused")]
    assert not bad, bad
    assert outcomes.count("ok") >= 40


def raw_exchange(port: int, payload: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes to the exporter and read until it closes the connection or `timeout` passes."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


@pytest.fixture(scope="module")
def short_timeout_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    """A real exporter whose idle/request timeout is 1 s."""
    log = tmp_path_factory.mktemp("exporter") / "exporter.log"
    args = ["--source", "synthetic", "--scenario", "dgx-h100", "--http-idle-timeout", "1"]
    with ExporterProcess(args, log_path=log) as exporter:
        yield exporter


@pytest.mark.integration
@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b" 4"),  # request line over 8 KiB
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10_000 + b"\r\n\r\n", b" 4"),  # header over 8 KiB
        (b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(100)) + b"\r\n", b" 4"),
        (b"\x00\x01\x02 not http at all\r\n\r\n", b" 400"),
        (b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n", b" 4"),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", b" 4"),
    ],
    ids=["long-request-line", "long-header", "too-many-headers", "garbage", "bad-version", "huge-body"],
)
def test_malformed_requests_get_4xx_and_the_daemon_serves_on(
    short_timeout_exporter: ExporterProcess, payload: bytes, status: bytes
) -> None:
    """Each malformed request gets a 4xx status line, and the next normal scrape works."""
    answer = raw_exchange(short_timeout_exporter.port, payload)
    assert re.match(rb"HTTP/1\.[01]" + status, answer), answer[:200]
    assert "mig_gpu_info" in short_timeout_exporter.metrics()


@pytest.mark.integration
def test_slow_and_silent_clients_are_cut_off(short_timeout_exporter: ExporterProcess) -> None:
    """A client dribbling its headers, one sending nothing and ones never reading are all closed or ignored,
    while scrapes go on."""
    port = short_timeout_exporter.port
    silent = socket.create_connection((LOOPBACK, port), timeout=10)
    slow = socket.create_connection((LOOPBACK, port), timeout=10)
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    readers = [socket.create_connection((LOOPBACK, port), timeout=10) for _ in range(20)]
    for sock in readers:  # ask for the body and never read it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
    try:
        started = time.monotonic()
        closed_after = None
        for _ in range(60):  # one header byte every 0.2 s, for up to 12 s
            try:
                slow.sendall(b"X")
            except OSError:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.2)
            assert "mig_gpu_info" in short_timeout_exporter.metrics()
        assert closed_after is not None, "a slow client was allowed to keep dribbling"
        assert silent.recv(1) == b""  # closed by the server
    finally:
        for sock in [silent, slow, *readers]:
            sock.close()
    assert short_timeout_exporter.proc is not None and short_timeout_exporter.proc.poll() is None


@pytest.mark.integration
def test_scrape_flood(short_timeout_exporter: ExporterProcess) -> None:
    """400 scrapes from 100 concurrent connections all succeed whole, and health checks answer throughout."""

    async def flood() -> tuple[list[int], list[int]]:
        import aiohttp

        statuses: list[int] = []
        health: list[int] = []
        limit = aiohttp.TCPConnector(limit=100)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=limit, timeout=timeout) as session:

            async def one() -> None:
                async with session.get(short_timeout_exporter.url + "/metrics") as response:
                    body = await response.read()
                    statuses.append(response.status if b"mig_exporter_build_info" in body else -1)

            async def probe() -> None:
                for _ in range(10):
                    async with (
                        aiohttp.ClientSession(timeout=timeout) as own,
                        own.get(short_timeout_exporter.url + "/healthz") as response,
                    ):
                        health.append(response.status)
                    await asyncio.sleep(0.05)

            await asyncio.gather(probe(), *(one() for _ in range(400)))
        return statuses, health

    statuses, health = asyncio.run(flood())
    assert statuses == [200] * 400
    assert health == [200] * 10
    assert short_timeout_exporter.proc is not None and short_timeout_exporter.proc.poll() is None


@pytest.mark.integration
def test_sigterm_under_load_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM while scrapes are in flight ends the daemon with exit code 0 and no traceback."""
    exporter = ExporterProcess(["--source", "synthetic", "--scenario", "dgx-h100"], log_path=tmp_path / "x.log")
    with exporter:
        threads = [threading.Thread(target=lambda: [_try_get(exporter.url) for _ in range(50)]) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        assert exporter.proc is not None
        exporter.proc.send_signal(signal.SIGTERM)
        assert exporter.proc.wait(15) == 0
        for t in threads:
            t.join(30)
    assert "Traceback" not in exporter.log()


def _try_get(url: str) -> None:
    with contextlib.suppress(OSError):
        http_get(url + "/metrics", timeout=5)
