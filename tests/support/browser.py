"""Headless Chromium for the browser tests (the landing page, the HTML report)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import pytest

from tests.support.processes import LOOPBACK, free_port, terminate

# Flags for a headless run on a machine with a closed network: no GPU, no sandbox (root), no background fetches.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def _unusable(reason: str) -> NoReturn:
    """Skip with the reason, or fail in CI, where .ci/run installs chromium."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run should have installed chromium")
    pytest.skip(f"{reason} (apt-get install chromium; .ci/run does)")


def chromium_command(profile: Path) -> list[str]:
    """The chromium command line with a fresh profile, once it has shown it can render a page here."""
    binary = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if binary is None:
        _unusable("no chromium binary on PATH")
    command = [binary, *FLAGS, f"--user-data-dir={profile}"]
    try:
        probe = subprocess.run([*command, "--dump-dom", "data:text/html,<p>ok</p>"], capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        _unusable("chromium did not answer within 120 s")
    if b"<p>ok</p>" not in probe.stdout:
        _unusable(f"chromium cannot run headless here: {probe.stderr.decode(errors='replace')[-300:]}")
    return command


class DevToolsPage:
    """A page in headless Chromium driven over the DevTools protocol, at an exact viewport size.

    `--dump-dom` cannot tell where things are drawn; this can: `evaluate` runs JavaScript in the page
    (for bounding boxes and computed styles) and `screenshot` saves what the viewport shows.
    """

    def __init__(self, command: list[str], width: int, height: int) -> None:
        self.port = free_port()
        self.command = [
            *command,
            f"--remote-debugging-port={self.port}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self.width, self.height = width, height
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> DevToolsPage:
        self._process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._session = aiohttp.ClientSession()
        targets = await self._targets()
        page = next(t for t in targets if t["type"] == "page")
        self._socket = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    async def _targets(self) -> list[dict[str, Any]]:
        """The browser's targets, once its DevTools port answers."""
        assert self._session is not None and self._process is not None
        for _ in range(600):
            if self._process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self._process.returncode} before its DevTools port opened")
            try:
                async with self._session.get(f"http://{LOOPBACK}:{self.port}/json/list") as response:
                    targets: list[dict[str, Any]] = await response.json()
                    if any(t["type"] == "page" for t in targets):
                        return targets
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError("chromium's DevTools port did not open within 60 s")

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            terminate(self._process)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events that arrive meanwhile are dropped)."""
        assert self._socket is not None
        ident = next(self._ids)
        await self._socket.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self._socket.receive_json(), 60)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def open(self, url: str, settle: float = 0.5) -> None:
        """Load `url` and wait until it has loaded and `settle` seconds more (for the page's own scripts)."""
        await self.call("Page.navigate", url=url)
        deadline = asyncio.get_running_loop().time() + 60
        while await self.evaluate("document.readyState") != "complete":
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} did not load")
            await asyncio.sleep(0.1)
        await asyncio.sleep(settle)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        """Save the viewport as a PNG."""
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
