"""A small client of Prometheus' HTTP API (also Thanos and Mimir behind a path prefix).

Every failure becomes a PrometheusError whose message is one line that says what was
asked of which server and why it failed, for the CLI to print and exit 2.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

# Prometheus refuses range queries that would return more than 11,000 points per series.
MAX_POINTS_PER_QUERY = 11_000

_LABEL_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_MATCHERS = re.compile(rf"^(?:{_LABEL_MATCHER}(?:,{_LABEL_MATCHER})*,?)?$")


class PrometheusError(Exception):
    """The server could not be reached or answered with an error; the message is one line."""


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


def chunks(start: float, end: float, step: float, max_points: int = MAX_POINTS_PER_QUERY) -> list[tuple[float, float]]:
    """Split [start, end] into consecutive ranges of at most `max_points` evaluation times each, on the step grid."""
    points = math.floor((end - start) / step + 1e-9) + 1
    out = []
    first = 0
    while first < points:
        last = min(points, first + max_points) - 1
        out.append((start + first * step, start + last * step))
        first = last + 1
    return out


class PrometheusClient:
    """Instant and range queries against one server; use as an async context manager."""

    def __init__(
        self,
        url: str,
        credentials: Credentials = Credentials(),
        timeout: float = 120.0,
        concurrency: int = 4,
    ) -> None:
        self.url = check_url(url)
        self._credentials = credentials
        self._timeout = timeout
        self._limit = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PrometheusClient:
        headers = dict(self._credentials.headers)
        if self._credentials.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self._credentials.bearer_token}"
        if self._credentials.basic_auth is not None:  # UTF-8, as curl -u and Prometheus' own client send it
            headers["Authorization"] = aiohttp.encode_basic_auth(*self._credentials.basic_auth)
        self._session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def query(self, expr: str, at: float) -> list[Sample]:
        """An instant query at unix time `at`; the result vector."""
        data = await self._post("query", {"query": expr, "time": _stamp(at)})
        if data.get("resultType") != "vector":
            raise PrometheusError(f"{self.url}: {expr} returned {data.get('resultType')!r}, expected a vector")
        return [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]

    async def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """A range query; keep it within MAX_POINTS_PER_QUERY points (see `chunks`)."""
        params = {"query": expr, "start": _stamp(start), "end": _stamp(end), "step": _stamp(step)}
        data = await self._post("query_range", params)
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"{self.url}: {expr} returned {data.get('resultType')!r}, expected a matrix")
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    async def retention(self) -> str | None:
        """The server's configured retention (e.g. `15d`), or None where it does not say (Thanos, Mimir)."""
        try:
            data = await self._get("status/runtimeinfo")
        except PrometheusError:
            return None
        value = data.get("storageRetention") if isinstance(data, dict) else None
        return value if isinstance(value, str) and value else None

    async def _post(self, path: str, form: Mapping[str, str]) -> Any:
        return await self._request("POST", path, form)

    async def _get(self, path: str) -> Any:
        return await self._request("GET", path, None)

    async def _request(self, method: str, path: str, form: Mapping[str, str] | None) -> Any:
        assert self._session is not None, "use PrometheusClient as an async context manager"
        endpoint = f"{self.url}/api/v1/{path}"
        what = f"{form['query']!r} " if form and "query" in form else ""
        async with self._limit:
            try:
                async with self._session.request(method, endpoint, data=form) as response:
                    body = await response.read()
                    status = response.status
                    content_type = response.content_type
            except aiohttp.ClientConnectorError as exc:
                raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc.os_error or exc}") from None
            except TimeoutError:
                raise PrometheusError(
                    f"Prometheus at {self.url} did not answer {what}within {self._timeout:g}s"
                ) from None
            except aiohttp.ClientError as exc:
                raise PrometheusError(f"cannot query Prometheus at {self.url}: {exc}") from None
        if status in (401, 403):
            raise PrometheusError(
                f"Prometheus at {self.url} refused the request (HTTP {status}): "
                "check --bearer-token-file or --basic-auth-user/--basic-auth-password-file"
            )
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "status" not in doc:
            raise PrometheusError(
                f"{endpoint} is not Prometheus' HTTP API (HTTP {status}, {content_type}): "
                "check the URL and its path prefix"
            )
        if doc["status"] != "success":
            raise PrometheusError(
                f"Prometheus at {self.url} rejected {what}(HTTP {status}): {doc.get('error', 'unknown error')}"
            )
        return doc.get("data", {})


def _stamp(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")
