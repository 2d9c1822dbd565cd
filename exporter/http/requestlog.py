"""Log lines that clients can cause: one short line each, and only so many of them.

A malformed request is the client's fault: it is logged as one WARNING line (what was wrong, the client's
address, a short escaped excerpt of what it sent), not as aiohttp's ERROR with a traceback and part of the
request. The same goes for failed TLS handshakes and for connections closed or refused at the connection
limit. At most `burst` such lines are written per `window` seconds; the next line written says how many
were left out. So a client sending garbage as fast as it can cannot fill the disk, or hide other lines.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from exporter.excerpt import excerpt

log = logging.getLogger("exporter.http.clients")
_AIOHTTP_SERVER = logging.getLogger("aiohttp.server")


class RateLimit:
    """At most `burst` events per `window` seconds (a token bucket)."""

    def __init__(self, burst: int = 10, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window, self._clock = burst, window, clock
        self._tokens = float(burst)
        self._at = clock()
        self._left_out = 0

    def take(self) -> int | None:
        """None when this event goes unlogged; else how many went unlogged since the last one that did not."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.burst / self.window)
        self._at = now
        if self._tokens < 1:
            self._left_out += 1
            return None
        self._tokens -= 1
        left_out, self._left_out = self._left_out, 0
        return left_out


class ClientLog:
    """Rate-limited one-line log messages about what clients did."""

    def __init__(self, logger: logging.Logger = log, limit: RateLimit | None = None) -> None:
        self._logger = logger
        self._limit = limit or RateLimit()

    def write(self, level: int, message: str) -> None:
        if not self._logger.isEnabledFor(level):
            return
        left_out = self._limit.take()
        if left_out is None:
            return
        suffix = f" ({left_out} similar lines left out)" if left_out else ""
        self._logger.log(level, "%s%s", message, suffix)

    def warning(self, message: str) -> None:
        self.write(logging.WARNING, message)

    def error(self, message: str) -> None:
        self.write(logging.ERROR, message)


class RequestHandlerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger aiohttp's request handler writes to (its `logger` option), reduced to what clients cause.

    aiohttp logs a request it cannot parse with `logger.exception(...)`, traceback included; that becomes
    one rate-limited warning. An exception in a handler (a bug) keeps its traceback, rate-limited too.
    """

    def __init__(self, clients: ClientLog, logger: logging.Logger = _AIOHTTP_SERVER) -> None:
        super().__init__(logger, {})
        self._clients = clients
        self._bug_limit = RateLimit(burst=5, window=60.0)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            self._bad_request(logging.WARNING, exc, args)
            return
        left_out = self._bug_limit.take()
        if left_out is not None:
            suffix = f" ({left_out} similar errors left out)" if left_out else ""
            self.logger.error(f"{msg}{suffix}", *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        """aiohttp logs a first request that is not HTTP at all (TLS to the HTTP port, a scanner) at debug."""
        if isinstance(exc_info, HttpProcessingError):
            self._bad_request(logging.DEBUG, exc_info, args)
        else:
            self.logger.debug(msg, *args, exc_info=exc_info, **kwargs)

    def _bad_request(self, level: int, exc: HttpProcessingError, args: tuple[object, ...]) -> None:
        remote = args[0] if args else "a client"
        what = excerpt(" ".join(exc.message.split()), 80) if exc.message else "(no detail)"
        self._clients.write(level, f"bad request from {remote}: {exc.code} {type(exc).__name__}: {what}")


def loop_exception_handler(clients: ClientLog) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler: accept() failures become one rate-limited line; the rest as usual,
    rate-limited."""
    others = RateLimit(burst=5, window=60.0)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
            clients.error(f"cannot accept connections: {exc.strerror or exc} (at the open-file limit?)")
            return
        if others.take() is not None:
            loop.default_exception_handler(context)

    return handle
