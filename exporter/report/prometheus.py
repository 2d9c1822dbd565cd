"""A small client of the Prometheus HTTP API: Prometheus, VictoriaMetrics, and Thanos or Mimir behind a path prefix.

The server is not trusted: every answer is bounded in size (MAX_RESPONSE_BYTES) and in time (`timeout` per
request, PROBE_TIMEOUT for the first one, so a server that accepts connections and never answers fails in
seconds), and its JSON is checked against the shape the API documents before anything reads it. Every
failure becomes a PrometheusError whose message is one line that says what was asked of which server and
why it failed, for the CLI to print and exit 2. A server that refuses a query for its size (HTTP 422, or a
query timeout) raises QueryTooLargeError, so the caller can ask again in smaller pieces.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # a review's answers are a few numbers per instance: far below this
PROBE_TIMEOUT = 10.0  # seconds for the first, trivial request
CONNECT_TIMEOUT = 10.0
MAX_ERROR_CHARS = 300  # of a server's own error message, quoted in ours

_LABEL_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_MATCHERS = re.compile(rf"^(?:{_LABEL_MATCHER}(?:,{_LABEL_MATCHER})*,?)?$")
T = TypeVar("T")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class PrometheusError(Exception):
    """The server could not be reached or answered with an error; the message is one line."""


class QueryTooLargeError(PrometheusError):
    """The server refused a query for its size or duration (HTTP 422, or its query timeout): ask for less."""


class NotServedError(PrometheusError):
    """The server does not serve this (optional) endpoint."""


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Text from a server made safe for a one-line message: control characters and newlines become spaces."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant query."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and its (unix time, value) points."""

    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to authenticate: a bearer token, or basic auth, plus extra headers (e.g. X-Scope-OrgID for Mimir)."""

    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Retention:
    """The server's configured retention (`15d`), or None with the reason it is unknown."""

    value: str | None
    unknown_because: str = ""


@dataclass
class Traffic:
    """What the server sent: requests, bytes of response bodies and values (numbers) in their results."""

    requests: int = 0
    bytes: int = 0
    values: int = 0


def check_url(url: str) -> str:
    """The base URL without a trailing slash; ValueError when it is not http(s)://host[:port][/prefix]."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{url!r} is not a Prometheus URL: expected http(s)://host[:port][/path-prefix]")
    return url.rstrip("/")


def selector_matchers(text: str) -> str:
    """Label matchers such as `instance=~"gpu-.*",cluster="eu"` (braces optional); ValueError when malformed."""
    inner = text.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1]
    if not _MATCHERS.match(inner):
        raise ValueError(f'{text!r} is not a list of label matchers such as instance=~"gpu-.*",cluster="eu"')
    return inner.strip().rstrip(",")


class _ShapeError(ValueError):
    """The JSON does not have the shape the API documents; the message says where."""


def _labels(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _ShapeError(f"{where} is not an object of label names to strings")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _ShapeError(f"{where} is not a number")
    try:
        return float(value)
    except ValueError:
        raise _ShapeError(f"{where} is not a number") from None


def _point(value: object, where: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise _ShapeError(f"{where} is not a [time, value] pair")
    return _number(value[0], f"{where}[0]"), _number(value[1], f"{where}[1]")


def _result(data: object, kind: str) -> list[Any]:
    if not isinstance(data, dict):
        raise _ShapeError("data is not an object")
    if data.get("resultType") != kind:
        raise _ShapeError(f"data.resultType is {one_line(str(data.get('resultType')), 40)!r}, expected {kind!r}")
    result = data.get("result")
    if not isinstance(result, list):
        raise _ShapeError("data.result is not a list")
    return result


def parse_vector(data: object) -> list[Sample]:
    """The samples of an instant query's `data`; _ShapeError when it is not a vector."""
    out = []
    for i, item in enumerate(_result(data, "vector")):
        where = f"data.result[{i}]"
        if not isinstance(item, dict):
            raise _ShapeError(f"{where} is not an object")
        labels = _labels(item.get("metric"), f"{where}.metric")
        out.append(Sample(labels, _point(item.get("value"), f"{where}.value")[1]))
    return out


def parse_matrix(data: object) -> list[Series]:
    """The series of a range query's `data`; _ShapeError when it is not a matrix."""
    out = []
    for i, item in enumerate(_result(data, "matrix")):
        where = f"data.result[{i}]"
        if not isinstance(item, dict):
            raise _ShapeError(f"{where} is not an object")
        values = item.get("values")
        if not isinstance(values, list):
            raise _ShapeError(f"{where}.values is not a list")
        points = [_point(p, f"{where}.values[{j}]") for j, p in enumerate(values)]
        out.append(Series(_labels(item.get("metric"), f"{where}.metric"), points))
    return out


def parse_strings(data: object) -> list[str]:
    """A list of strings (label names or values); _ShapeError otherwise."""
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise _ShapeError("data is not a list of strings")
    return data


def parse_label_sets(data: object) -> list[dict[str, str]]:
    """The label sets of a series query; _ShapeError otherwise."""
    if not isinstance(data, list):
        raise _ShapeError("data is not a list of label sets")
    return [_labels(item, f"data[{i}]") for i, item in enumerate(data)]


def _stamp(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


class PrometheusClient:
    """Queries against one server; use as an async context manager."""

    def __init__(
        self,
        url: str,
        credentials: Credentials = Credentials(),
        timeout: float = 120.0,
        concurrency: int = 4,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.url = check_url(url)
        self.traffic = Traffic()
        self._credentials = credentials
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PrometheusClient:
        headers = dict(self._credentials.headers)
        if self._credentials.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self._credentials.bearer_token}"
        if self._credentials.basic_auth is not None:  # UTF-8, as curl -u and Prometheus' own client send it
            headers["Authorization"] = aiohttp.encode_basic_auth(*self._credentials.basic_auth)
        # asyncio.timeout() bounds each whole request, body included; aiohttp bounds only connecting.
        timeout = aiohttp.ClientTimeout(total=None, connect=min(self._timeout, CONNECT_TIMEOUT))
        self._session = aiohttp.ClientSession(headers=headers, timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def query(self, expr: str, at: float) -> list[Sample]:
        """An instant query at unix time `at`; the result vector."""
        data = await self._request("POST", "query", {"query": expr, "time": _stamp(at)}, expr)
        samples = self._parse(parse_vector, data, expr)
        self.traffic.values += len(samples)
        return samples

    async def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """A range query (keep it within 11,000 points per series, Prometheus' limit)."""
        form = {"query": expr, "start": _stamp(start), "end": _stamp(end), "step": _stamp(step)}
        series = self._parse(parse_matrix, await self._request("POST", "query_range", form, expr), expr)
        self.traffic.values += sum(len(s.points) for s in series)
        return series

    async def label_values(self, label: str, matches: Sequence[str], start: float, end: float) -> list[str]:
        """Values of `label` on series matching any of `matches` with samples between start and end."""
        form = [("match[]", m) for m in matches] + [("start", _stamp(start)), ("end", _stamp(end))]
        what = f"the values of label {label!r}"
        values = self._parse(parse_strings, await self._request("GET", f"label/{label}/values", form, what), what)
        self.traffic.values += len(values)
        return values

    async def label_names(self, matches: Sequence[str], start: float, end: float) -> list[str]:
        """Label names of series matching any of `matches` with samples between start and end."""
        form = [("match[]", m) for m in matches] + [("start", _stamp(start)), ("end", _stamp(end))]
        names = self._parse(parse_strings, await self._request("GET", "labels", form, "label names"), "label names")
        self.traffic.values += len(names)
        return names

    async def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        """Label sets of the series matching `match` with samples between start and end (from the index)."""
        form = [("match[]", match), ("start", _stamp(start)), ("end", _stamp(end))]
        found = self._parse(parse_label_sets, await self._request("GET", "series", form, match), match)
        self.traffic.values += len(found)
        return found

    async def retention(self) -> Retention:
        """The configured retention. Also the first request, with a short timeout: a silent server fails here."""
        try:
            data = await self._request("GET", "status/runtimeinfo", None, "its runtime information", PROBE_TIMEOUT)
        except NotServedError:
            return Retention(
                None, "the server does not serve /api/v1/status/runtimeinfo (VictoriaMetrics, Thanos and Mimir do not)"
            )
        value = data.get("storageRetention") if isinstance(data, dict) else None
        if isinstance(value, str) and value:
            return Retention(one_line(value, 60))
        return Retention(None, "the server's runtime information names no retention")

    def _parse(self, parse: Callable[[object], T], data: object, what: str) -> T:
        try:
            return parse(data)
        except _ShapeError as exc:
            raise PrometheusError(
                f"Prometheus at {self.url} answered {one_line(what, 120)!r} with JSON of an unexpected shape: {exc}"
            ) from None

    async def _request(
        self,
        method: str,
        path: str,
        form: Mapping[str, str] | Sequence[tuple[str, str]] | None,
        what: str,
        timeout: float | None = None,
    ) -> Any:
        assert self._session is not None, "use PrometheusClient as an async context manager"
        endpoint = f"{self.url}/api/v1/{path}"
        asked = one_line(what, 120)
        limit = self._timeout if timeout is None else min(timeout, self._timeout)
        params, data = (form, None) if method == "GET" else (None, form)
        async with self._limit:
            try:
                async with asyncio.timeout(limit):
                    async with self._session.request(method, endpoint, params=params, data=data) as response:
                        status, content_type = response.status, response.content_type
                        body = await self._read(response, asked)
            except TimeoutError:
                raise PrometheusError(f"Prometheus at {self.url} did not answer {asked!r} within {limit:g}s") from None
            except aiohttp.ClientConnectorError as exc:
                raise PrometheusError(
                    f"cannot reach Prometheus at {self.url}: {one_line(str(exc.os_error or exc))}"
                ) from None
            except aiohttp.ClientError as exc:
                raise PrometheusError(f"cannot query Prometheus at {self.url}: {one_line(str(exc))}") from None
        self.traffic.requests += 1
        self.traffic.bytes += len(body)
        if status in (401, 403):
            raise PrometheusError(
                f"Prometheus at {self.url} refused the request (HTTP {status}): "
                "check --bearer-token-file or --basic-auth-user/--basic-auth-password-file"
            )
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        optional = path.startswith("status/")
        if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
            if optional and status in (400, 404, 405):
                raise NotServedError(f"{endpoint}: HTTP {status}")
            raise PrometheusError(
                f"{endpoint} is not Prometheus' HTTP API (HTTP {status}, {one_line(content_type, 60)}): "
                "check the URL and its path prefix"
            )
        if doc["status"] != "success":
            error = one_line(str(doc.get("error", "unknown error")))
            message = f"Prometheus at {self.url} rejected {asked!r} (HTTP {status}): {error}"
            if optional and status in (400, 404, 405):
                raise NotServedError(message)
            if status == 422 or doc.get("errorType") == "timeout":
                raise QueryTooLargeError(message)
            raise PrometheusError(message)
        return doc.get("data")

    async def _read(self, response: aiohttp.ClientResponse, asked: str) -> bytes:
        """The whole body, refusing more than the limit (an endless or huge answer fails, it is never buffered)."""
        too_big = PrometheusError(
            f"Prometheus at {self.url} answered {asked!r} with more than {self._max_bytes // (1024 * 1024)} MiB: "
            "narrow the selection with --match"
        )
        if (response.content_length or 0) > self._max_bytes:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self._max_bytes:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)
