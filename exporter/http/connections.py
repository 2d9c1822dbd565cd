"""Client connections: at most so many, the longest idle closed first, and TLS handshakes per connection.

Every accepted connection goes through ConnectionLimit before aiohttp's protocol sees it (for HTTPS, after
a TLS handshake with the SSLContext of the web-config in force). A connection past the limit makes room
by closing an open connection that is idle: one that never sent a complete request, or whose last
request ended (a keep-alive left open, a slow or silent client, one that stopped reading). Of those, it
closes first the one idle longest among connections that never had a request answered with success (a
silent client, a password guesser), then the one idle longest among the rest, so that a flood of new
connections displaces its own before a scraper's. Connections with a request in a handler (a scrape
being served, a password being checked) are not closed; if every connection has one, the new connection
is refused.

The limit stays below the process' open-file limit, so accept() never runs out of descriptors and a
scraper can always get in, however many connections others hold open.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import time
from collections.abc import Callable
from typing import cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from exporter.http.requestlog import ClientLog

# asyncio accepts up to the listen backlog in one go, before the connections closed to make room for them
# are closed for good (on the loop's next turn), so that many descriptors more may be open for a moment.
LISTEN_BACKLOG = 64
# Open files kept for everything but client connections: that burst, driver device files, the kubelet and
# DCGM sockets, certificate and config reads, the event loop's own descriptors.
FD_RESERVE = LISTEN_BACKLOG + 64


def connection_limit(requested: int) -> int:
    """`requested`, lowered to what the open-file limit leaves for client connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft - FD_RESERVE))


class ConnectionLimit:
    """At most `limit` client connections; see the module docstring."""

    def __init__(self, limit: int, log: ClientLog | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._log = log or ClientLog()
        self._clock = clock
        self._open: dict[_Connection, None] = {}  # in the order they were accepted
        self._by_handler: dict[RequestHandler, _Connection] = {}

    def __len__(self) -> int:
        return len(self._open)

    def protocol_factory(
        self, server: Server, tls: Callable[[], ssl.SSLContext] | None = None, handshake_timeout: float = 10.0
    ) -> Callable[[], asyncio.Protocol]:
        """For loop.create_server(): each accepted connection, admitted or refused, handed to `server`'s protocol."""

        def accept() -> asyncio.Protocol:
            if len(self._open) >= self.limit and not self._make_room():
                self._log.warning(f"connection limit ({self.limit}) reached, every connection busy: refused one")
                return _Refused()
            connection = _Connection(self, server(), tls, handshake_timeout)
            self._open[connection] = None
            self._by_handler[connection.handler] = connection
            return connection

        return accept

    def _make_room(self) -> bool:
        """Close the connection idle longest, unproven ones first; False when every connection is in a request."""
        idle = [c for c in self._open if c.busy == 0 and c.transport is not None]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: (c.proven, c.idle_since))
        self._log.warning(
            f"connection limit ({self.limit}) reached: closed the connection idle longest "
            f"(from {oldest.peer}, idle {self._clock() - oldest.idle_since:.0f} s)"
        )
        self._forget(oldest)  # now: its socket closes on the loop's next turn
        oldest.abort()
        return True

    def _forget(self, connection: _Connection) -> None:
        self._open.pop(connection, None)
        self._by_handler.pop(connection.handler, None)

    @property
    def middleware(self) -> Middleware:
        """Marks a connection busy while one of its requests is in a handler (so it is not closed for room), and
        proven once one is answered with success."""

        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            connection = self._by_handler.get(request.protocol)
            if connection is None:
                return await handler(request)
            connection.busy += 1
            try:
                response = await handler(request)
                connection.proven |= response.status < 400
                return response
            finally:
                connection.busy -= 1
                connection.idle_since = self._clock()

        return track

    def abort_all(self) -> None:
        """Close every connection still open (at shutdown, after aiohttp closed those it knows)."""
        for connection in list(self._open):
            connection.abort()

    def now(self) -> float:
        return self._clock()

    def log_handshake_failure(self, peer: str, exc: OSError, timeout: float) -> None:
        if isinstance(exc, ssl.SSLError) and exc.reason:
            reason = exc.reason.replace("_", " ").lower()  # "wrong version number", "http request", ...
        elif isinstance(exc, TimeoutError):
            reason = f"no handshake within {timeout:g} s"
        else:
            reason = exc.strerror or type(exc).__name__
        self._log.warning(f"TLS handshake with {peer} failed: {reason}")


class _Connection(asyncio.Protocol):
    """One client connection, forwarded to aiohttp's protocol once it is (for HTTPS: once TLS is) up."""

    def __init__(
        self,
        owner: ConnectionLimit,
        handler: RequestHandler,
        tls: Callable[[], ssl.SSLContext] | None,
        handshake_timeout: float,
    ) -> None:
        self.owner, self.handler = owner, handler
        self._tls, self._handshake_timeout = tls, handshake_timeout
        self.transport: asyncio.Transport | None = None  # the socket's, for closing it whatever state TLS is in
        self.idle_since = owner.now()
        self.busy = 0  # requests of this connection in a handler now
        self.proven = False  # a request of it was answered with success (a scrape let in)
        self.peer = "?"
        self._handed_over = False
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if self._tls is None:
            self._hand_over(self.transport)
            return
        self.transport.pause_reading()  # the TLS layer reads from here on
        self._handshake = asyncio.get_running_loop().create_task(self._start_tls(self.transport, self._tls()))

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            secure = await loop.start_tls(
                raw, self, context, server_side=True, ssl_handshake_timeout=self._handshake_timeout
            )
        except OSError as exc:  # ssl.SSLError, a reset, the handshake's TimeoutError
            self.owner.log_handshake_failure(self.peer, exc, self._handshake_timeout)
            raw.abort()
            return
        if secure is None:
            raw.abort()
            return
        self._hand_over(secure)

    def _hand_over(self, transport: asyncio.Transport) -> None:
        self._handed_over = True
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> None:
        if self._handed_over:
            self.handler.eof_received()

    def pause_writing(self) -> None:
        if self._handed_over:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handed_over:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._forget(self)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
        if self._handed_over:
            self.handler.connection_lost(exc)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _Refused(asyncio.Protocol):
    """A connection over the limit: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()
