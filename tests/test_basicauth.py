"""Basic-auth checks under pressure: a bounded queue, cancelled waiters, remembered matches, equal timing."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from exporter.http import basicauth
from exporter.http.basicauth import AuthBusyError, BasicAuth, decoy_cost
from exporter.http.server import build_app
from exporter.http.webconfig import WebConfigWatcher
from exporter.sampler import Sampler
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.tls import bcrypt_hash
from tests.test_webconfig import basic

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]

USERS = {"prometheus": bcrypt_hash("secret").encode()}


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """bcrypt checks block until the event is set (then run for real), so a test controls what is in flight."""
    opened = threading.Event()
    real = basicauth._checkpw

    def blocked(password: bytes, hashed: bytes | None, cost: int) -> bool:
        opened.wait(10)
        return real(password, hashed, cost)

    monkeypatch.setattr(basicauth, "_checkpw", blocked)
    yield opened
    opened.set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_new_credentials_wait_in_a_bounded_queue(gate: threading.Event) -> None:
    """One check per worker runs and max_waiting wait; the next new credential is refused at once."""
    auth = BasicAuth(workers=1, max_waiting=2)
    checks = [asyncio.create_task(auth.check(USERS, "prometheus", f"wrong-{i}")) for i in range(3)]
    await settle()
    assert auth.waiting == 2
    started = time.monotonic()
    with pytest.raises(AuthBusyError):
        await auth.check(USERS, "prometheus", "one-too-many")
    assert time.monotonic() - started < 0.1
    gate.set()
    assert await asyncio.gather(*checks) == [False, False, False]
    auth.close()


async def test_a_waiting_check_whose_client_left_leaves_the_queue(gate: threading.Event) -> None:
    """Cancelling a waiting request (aiohttp does when its client disconnects) frees its place at once."""
    auth = BasicAuth(workers=1, max_waiting=1)
    running = asyncio.create_task(auth.check(USERS, "prometheus", "a"))
    waiting = asyncio.create_task(auth.check(USERS, "prometheus", "b"))
    await settle()
    assert auth.waiting == 1
    waiting.cancel()
    await settle()
    assert auth.waiting == 0
    replacement = asyncio.create_task(auth.check(USERS, "prometheus", "secret"))  # not refused: there is room
    await settle()
    gate.set()
    assert await running is False and await replacement is True
    auth.close()


async def test_a_credential_that_matched_is_answered_at_once_whatever_waits(gate: threading.Event) -> None:
    """Once let in, a scraper is let in without a check, even with the queue full of strangers' passwords;
    failures, however many, never push it out."""
    auth = BasicAuth(workers=1, max_waiting=4, failures_remembered=8)
    gate.set()
    assert await auth.check(USERS, "prometheus", "secret") is True
    for i in range(50):  # more failures than are remembered
        assert await auth.check(USERS, "prometheus", f"wrong-{i}") is False
    gate.clear()
    flood = [asyncio.create_task(auth.check(USERS, "prometheus", f"flood-{i}")) for i in range(5)]
    await settle()
    started = time.monotonic()
    assert await auth.check(USERS, "prometheus", "secret") is True
    assert time.monotonic() - started < 0.05
    gate.set()
    await asyncio.gather(*flood)
    auth.close()


async def test_closing_refuses_new_checks_and_those_still_waiting(gate: threading.Event) -> None:
    """After close() (shutdown), waiting checks end with AuthBusyError instead of each taking a bcrypt check."""
    auth = BasicAuth(workers=1, max_waiting=3)
    running = asyncio.create_task(auth.check(USERS, "prometheus", "a"))
    waiting = [asyncio.create_task(auth.check(USERS, "prometheus", f"w{i}")) for i in range(3)]
    await settle()
    auth.close()
    with pytest.raises(AuthBusyError):
        await auth.check(USERS, "prometheus", "late")
    gate.set()
    assert await running is False
    for task in waiting:
        with pytest.raises(AuthBusyError):
            await task
    auth.join()


def test_the_decoy_has_the_cost_of_the_configured_hashes() -> None:
    """The decoy takes the cost most users' hashes have (the highest on a tie); 10 without users."""
    cost12, cost10 = bcrypt_hash("a", 12).encode(), bcrypt_hash("b", 10).encode()
    assert decoy_cost({"a": cost12}) == 12
    assert decoy_cost({"a": cost12, "b": cost10, "c": cost10}) == 10
    assert decoy_cost({"a": cost12, "b": cost10}) == 12
    assert decoy_cost({}) == 10


@pytest.mark.slow
async def test_an_unknown_user_takes_as_long_as_a_wrong_password(
    aiohttp_client: ClientFactory, demo: Simulator, tmp_path: Path
) -> None:
    """With a cost-12 hash (bcrypt's default), 401s for an unknown user and for a listed user's wrong password
    take the same time: medians within 20 % (a cost-10 decoy made it 4x apart and told which users exist)."""
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('secret', 12)}\n")
    watcher = WebConfigWatcher(path, check_interval=3600)
    client = await aiohttp_client(build_app(Sampler(SyntheticSource(demo), interval=60), web_config=watcher))
    timings: dict[str, list[float]] = {"wrong password": [], "unknown user": []}
    for i in range(7):  # alternate, so a change in the machine's load falls on both alike
        for what, user in (("wrong password", "prometheus"), ("unknown user", f"nobody-{i}")):
            started = time.perf_counter()
            response = await client.get("/metrics", headers=basic(user, f"guess-{i}"))  # never seen: a real check
            timings[what].append(time.perf_counter() - started)
            assert response.status == 401
    wrong, unknown = (statistics.median(timings[k]) for k in ("wrong password", "unknown user"))
    assert abs(wrong - unknown) / max(wrong, unknown) < 0.2, timings
    assert min(wrong, unknown) > 0.05  # both did a cost-12 check
