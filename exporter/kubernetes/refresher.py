"""Pod attribution kept fresh in the background: one kubelet List every interval, never per scrape.

Scrapes read `attribution`, a frozen value swapped whole after each successful List, so a
slow, hung or missing kubelet can never delay one. Without a socket the feature is off (one
log line) and the socket is looked for again every interval, so a kubelet that starts later
is picked up. After a failed List the last answer is kept for `keep_for` seconds, so a
kubelet restart does not blank the attribution, then dropped rather than served stale. The gRPC
client is imported only once a socket exists: a node without a kubelet never loads grpc.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable

from exporter.contract import defaults
from exporter.kubernetes.attribution import KubeletClient, KubeletError, PodAttribution

log = logging.getLogger(__name__)

_EMPTY = PodAttribution()


def grpc_client(socket_path: str) -> KubeletClient:
    """The gRPC pod-resources client, imported on first use."""
    from exporter.kubernetes.podresources import PodResourcesClient

    return PodResourcesClient(socket_path)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class PodAttributionRefresher:
    """Calls the kubelet's List every `interval` seconds under `timeout`; holds the latest answer."""

    def __init__(
        self,
        socket_path: str,
        *,
        interval: float = defaults.KUBELET_INTERVAL_SECONDS,
        timeout: float | None = None,
        keep_for: float | None = None,
        client_factory: Callable[[str], KubeletClient] = grpc_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_path = socket_path
        self.interval = interval
        self.timeout = timeout if timeout is not None else min(interval, 5.0)
        self.keep_for = keep_for if keep_for is not None else 3 * interval
        self._client_factory = client_factory
        self._clock = clock
        self._client: KubeletClient | None = None
        self._last_ok = float("-inf")
        self._announced_off = False
        self._unloadable = False  # the gRPC client cannot be imported here: stay off, say so once
        self.attribution: PodAttribution = _EMPTY
        self.kubelet_up: bool | None = None  # None while there is no socket (the feature is off)

    async def refresh(self) -> None:
        """One List call (or one look for the socket); updates `attribution` and `kubelet_up`."""
        if not _is_socket(self.socket_path):
            await self._switch_off()
            return
        if self._unloadable:
            return
        if self._client is None:
            try:
                self._client = self._client_factory(self.socket_path)
            except Exception as exc:  # ImportError, or generated code refusing an older protobuf or grpcio
                log.warning(
                    "pod attribution is off: its gRPC client cannot be loaded (%s: %s)", type(exc).__name__, exc
                )
                self._unloadable = True
                return
        try:
            # The gRPC deadline ends the call; wait_for is the backstop should the channel itself hang.
            attribution = await asyncio.wait_for(self._client.list(self.timeout), self.timeout + 1)
        except (KubeletError, TimeoutError) as exc:
            await self._failed(exc)
            return
        if self.kubelet_up is not True:
            log.info("pod attribution on: kubelet pod-resources socket %s answers", self.socket_path)
        self.attribution, self.kubelet_up, self._last_ok = attribution, True, self._clock()
        self._announced_off = False

    async def _switch_off(self) -> None:
        if not self._announced_off:
            verb = "vanished" if self.kubelet_up is not None else "not found"
            log.info(
                "pod attribution off: kubelet pod-resources socket %s %s (looking again every %gs)",
                self.socket_path,
                verb,
                self.interval,
            )
            self._announced_off = True
        self.attribution, self.kubelet_up = _EMPTY, None
        await self._drop_client()

    async def _failed(self, exc: BaseException) -> None:
        if self.kubelet_up is not False:
            reason = str(exc) if isinstance(exc, KubeletError) else f"no answer in {self.timeout:g}s"
            log.warning("pod attribution: kubelet List on %s failed: %s", self.socket_path, reason)
        self.kubelet_up = False
        if self._clock() - self._last_ok > self.keep_for:
            self.attribution = _EMPTY
        await self._drop_client()  # a fresh channel next time: the kubelet may have re-created its socket

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def run(self) -> None:
        """Refresh every `interval` seconds until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # attribution is optional: never let it end the exporter
                log.exception("pod attribution refresh failed")
                with contextlib.suppress(Exception):
                    await self._drop_client()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        await self._drop_client()
