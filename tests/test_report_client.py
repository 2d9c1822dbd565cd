"""`mig-exporter report` does not trust the server: bounded answers, bounded time, checked JSON, one line and exit 2.

Each test runs the real CLI against a fake server on loopback that misbehaves in one way.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer

from exporter.report import prometheus
from exporter.report.prometheus import MAX_RESPONSE_BYTES, PROBE_TIMEOUT

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def high_water_mb(pid: int) -> float:
    """A running process's peak RSS (VmHWM: its own, from exec on), in MB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def run_report(url: str, *args: str, timeout: float = 60) -> tuple[int, str, float, float]:
    """The CLI against `url`: exit code, stderr, seconds it took, and its peak RSS in MB."""
    started = time.monotonic()
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "exporter", "report", "--prometheus", url, "--window", "1d", *args),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    peak = 0.0

    async def watch() -> None:
        nonlocal peak
        while child.returncode is None:
            peak = max(peak, high_water_mb(child.pid))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    _, err = await asyncio.wait_for(child.communicate(), timeout)
    await watcher
    assert child.returncode is not None
    return child.returncode, err.decode(errors="replace"), time.monotonic() - started, peak


def assert_one_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("mig-exporter: error: "), err
    for fragment in fragments:
        assert fragment in err, err


async def serve(aiohttp_server: AiohttpServer, query: Handler, query_range: Handler | None = None) -> str:
    """A server that looks like Prometheus (one node, no retention, range queries empty) until an instant query
    asks for data."""

    async def runtimeinfo(_: web.Request) -> web.Response:
        return web.Response(status=404, text="404 page not found")

    async def label_values(_: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": ["node-1:9401"]})

    async def empty(_: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": []})

    app = web.Application()
    app.router.add_get("/api/v1/status/runtimeinfo", runtimeinfo)
    app.router.add_get("/api/v1/label/{name}/values", label_values)
    app.router.add_route("*", "/api/v1/series", empty)
    app.router.add_route("*", "/api/v1/labels", empty)
    app.router.add_route("*", "/api/v1/query", query)
    no_range = answer({"status": "success", "data": {"resultType": "matrix", "result": []}})
    app.router.add_route("*", "/api/v1/query_range", query_range or no_range)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


def answer(doc: Any, status: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=status, body=json.dumps(doc).encode(), content_type="application/json")

    return handler


async def test_report_refuses_an_answer_larger_than_its_limit_in_bounded_memory(aiohttp_server: AiohttpServer) -> None:
    """A 200 MB answer is cut at 32 MiB: one line, exit 2, and the client never holds it."""
    chunk = b'{"status":"success","data":{"resultType":"vector","result":[' + b'{"metric":{},"value":[1,"1"]},' * 30000

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        sent = 0
        try:
            while sent < 200_000_000:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionResetError, RuntimeError):
            pass  # the client hung up: what it should do
        return response

    code, err, _, peak = await run_report(await serve(aiohttp_server, huge, huge))
    assert_one_line(code, err, "with more than 32 MiB", "narrow the selection with --match")
    assert 0 < peak < 200, f"peak RSS {peak:.0f} MB"
    assert MAX_RESPONSE_BYTES == 32 * 1024 * 1024


async def test_report_stops_an_endless_answer(aiohttp_server: AiohttpServer) -> None:
    """A body that never ends (no length, chunked forever) ends the report with one line, not MemoryError."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"[" * 65536)
        except (ConnectionResetError, RuntimeError):
            return response

    code, err, _, _ = await run_report(await serve(aiohttp_server, endless, endless))
    assert_one_line(code, err, "with more than 32 MiB")


async def test_report_gives_up_on_a_silent_server_within_seconds() -> None:
    """A server that accepts connections and never answers fails the first request in PROBE_TIMEOUT (10 s), with
    the default --timeout of 120 s."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answer

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        code, err, took, _ = await run_report(f"http://127.0.0.1:{port}")
    assert_one_line(code, err, f"did not answer 'its runtime information' within {PROBE_TIMEOUT:g}s")
    assert took < PROBE_TIMEOUT + 8, took


async def test_report_bounds_the_time_of_an_answer_that_trickles(aiohttp_server: AiohttpServer) -> None:
    """An answer sent a byte a second is cut at --timeout, body included."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for byte in b'{"status":"success","data":{"resultType":"vector","result":[]}}':
                await response.write(bytes([byte]))
                await asyncio.sleep(1)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    code, err, took, _ = await run_report(await serve(aiohttp_server, trickle, trickle), "--timeout", "2")
    assert_one_line(code, err, "did not answer", "within 2s")
    assert took < 15, took


SHAPES = [
    ({"status": "success", "data": "nope"}, "data is not an object"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "data.resultType is 'matrix'"),
    ({"status": "success", "data": {"resultType": "vector", "result": {}}}, "data.result is not a list"),
    ({"status": "success", "data": {"resultType": "vector", "result": [1]}}, "data.result[0] is not an object"),
    (
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"a": 1}, "value": [1, "2"]}]}},
        "data.result[0].metric is not an object of label names to strings",
    ),
    (
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1]}]}},
        "data.result[0].value is not a [time, value] pair",
    ),
    (
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "x"]}]}},
        "data.result[0].value[1] is not a number",
    ),
    (
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [True, "1"]}]}},
        "data.result[0].value[0] is not a number",
    ),
    (
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}},
        "answered nan as a count",
    ),
    ({"data": {}}, "is not Prometheus' HTTP API"),
]


@pytest.mark.parametrize(("doc", "message"), SHAPES)
async def test_report_names_json_of_the_wrong_shape(aiohttp_server: AiohttpServer, doc: Any, message: str) -> None:
    """Valid JSON of the wrong shape is named, where it is wrong: one line, exit 2, no AttributeError or KeyError."""
    code, err, _, _ = await run_report(await serve(aiohttp_server, answer(doc)))
    assert_one_line(code, err, message)


async def test_report_refuses_json_nested_too_deep_and_bytes_that_are_not_text(aiohttp_server: AiohttpServer) -> None:
    """Nesting that would exhaust the parser's recursion, and bytes that are not UTF-8: one line, exit 2."""
    for body in (b"[" * 200_000 + b"]" * 200_000, b'{"status": "success", "data": "\xff\xfe"}'):

        async def send(_: web.Request, body: bytes = body) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        code, err, _, _ = await run_report(await serve(aiohttp_server, send))
        assert_one_line(code, err, "is not Prometheus' HTTP API")


async def test_report_prints_a_server_error_with_newlines_on_one_line(aiohttp_server: AiohttpServer) -> None:
    """A Prometheus error message holding newlines (and other control characters) is printed as one line."""
    doc = {"status": "error", "errorType": "bad_data", "error": "first line\nsecond line\r\n\x1b[31mthird"}
    code, err, _, _ = await run_report(await serve(aiohttp_server, answer(doc, status=400)))
    assert_one_line(code, err, "first line second line [31mthird")


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
RESULT = st.fixed_dictionaries(
    {"resultType": st.sampled_from(["vector", "matrix", "scalar", 1]), "result": st.lists(JSON, max_size=3) | JSON}
)


@given(data=JSON | RESULT)
def test_report_parsers_accept_the_documented_shape_or_say_where_it_differs(data: Any) -> None:
    """Whatever JSON the server sends as `data`, each parser returns values or raises its one error, nothing else."""
    for parse in (
        prometheus.parse_vector,
        prometheus.parse_matrix,
        prometheus.parse_strings,
        prometheus.parse_label_sets,
    ):
        try:
            parse(data)
        except prometheus._ShapeError as exc:
            assert "\n" not in str(exc)
