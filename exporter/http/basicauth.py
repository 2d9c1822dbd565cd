"""Basic-auth credential checks that a flood of wrong passwords can neither slow down nor fill memory with.

bcrypt is slow on purpose (about 50 ms at cost 10, 200 ms at cost 12, on one core), so a client that
sends new wrong passwords costs a core per few requests. The rules:

- A credential that matched once is remembered (under a SHA-256 digest of user, hash and password, never
  the password) in a set that only matching credentials enter: a scraper that is let in once is let in at
  once afterwards, whatever else arrives. Failures are remembered apart, in a bounded LRU, so a repeated
  wrong password costs one check.
- New credentials are checked in a few worker threads (bcrypt releases the GIL, so the event loop keeps
  serving); at most `max_waiting` more wait for a worker, in order. Beyond that a request is refused at
  once with AuthBusyError (the server answers 503 and closes the connection), and a waiting request whose
  client goes away leaves the queue. Memory and waiting time are bounded whatever the flood.
- An unknown user is checked against a decoy hash of the configured hashes' cost, so its answer takes as
  long as a wrong password for a listed user and does not tell which users exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter, OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from types import ModuleType
from typing import cast


def _bcrypt() -> ModuleType:
    """The bcrypt module, imported only where basic auth is configured (a GPU node's image may lack it)."""
    import bcrypt

    return bcrypt


def bcrypt_available() -> bool:
    """Whether basic auth can work here: the bcrypt package imports."""
    try:
        _bcrypt()
    except ImportError:
        return False
    return True


class AuthBusyError(Exception):
    """Too many new credentials are waiting for a check; the request is refused without one."""


def default_workers() -> int:
    """Half the CPUs, between 1 and 4: bcrypt gets cores, and the event loop keeps one."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def hash_cost(hashed: bytes) -> int:
    """The cost of a `$2y$NN$...` bcrypt hash."""
    return int(hashed[4:6])


@cache
def decoy_hash(cost: int) -> bytes:
    """A bcrypt hash of the given cost to check unknown users' passwords against."""
    bcrypt = _bcrypt()
    return cast(bytes, bcrypt.hashpw(b"no such user", bcrypt.gensalt(cost)))


def decoy_cost(users: Mapping[str, bytes]) -> int:
    """The cost for these users' decoy: the one most of their hashes have (the highest on a tie)."""
    costs = Counter(hash_cost(h) for h in users.values())
    return max(costs, key=lambda c: (costs[c], c)) if costs else 10


class BasicAuth:
    """Checks user:password against bcrypt hashes; see the module docstring."""

    def __init__(
        self, workers: int | None = None, max_waiting: int | None = None, failures_remembered: int = 1024
    ) -> None:
        self._workers = workers or default_workers()
        self._max_waiting = max_waiting if max_waiting is not None else 8 * self._workers
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="bcrypt")
        self._slots: asyncio.Semaphore | None = None  # made on first use, in the serving loop
        self._waiting = 0
        self._matched: OrderedDict[bytes, None] = OrderedDict()  # only credentials that matched
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._matched_limit = 64
        self._users: Mapping[str, bytes] = {}
        self._decoy_cost = 10
        self._failed_limit = failures_remembered
        self._closed = False

    @property
    def waiting(self) -> int:
        """Requests waiting for a worker now."""
        return self._waiting

    def prepare(self, users: Mapping[str, bytes]) -> None:
        """Make the decoy for `users` now (bcrypt-slow: call it where blocking is fine), not on a request."""
        decoy_hash(decoy_cost(users))

    async def check(self, users: Mapping[str, bytes], user: str, password: str) -> bool:
        """True when `user` is listed and `password` matches its hash; raises AuthBusyError when the queue is full."""
        hashed = users.get(user)
        secret = password.encode("utf-8", "surrogateescape")
        key = hashlib.sha256(b"\0".join((user.encode("utf-8", "surrogateescape"), hashed or b"", secret))).digest()
        known = self._known(key)
        if known is not None:
            return known
        if self._closed or self._waiting >= self._max_waiting:
            raise AuthBusyError
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._workers)
        self._waiting += 1
        try:
            await self._slots.acquire()  # a cancelled request (its client went away) leaves the queue here
        finally:
            self._waiting -= 1
        known = self._known(key)  # checked while this one waited
        if known is not None or self._closed:
            self._slots.release()
            if known is None:
                raise AuthBusyError
            return known
        if users is not self._users:  # the users in force changed: work out their decoy's cost once
            self._users, self._decoy_cost = users, decoy_cost(users)
        try:
            running = asyncio.get_running_loop().run_in_executor(
                self._executor, _checkpw, secret, hashed, self._decoy_cost
            )
        except RuntimeError:  # the executor was shut down while this one waited
            self._slots.release()
            raise AuthBusyError from None
        running.add_done_callback(lambda done: self._finished(key, done))
        # A bcrypt call cannot be interrupted: if this request is cancelled, the check still ends, frees its
        # worker and leaves its outcome for the next request with the same credentials.
        return await asyncio.shield(running)

    def _known(self, key: bytes) -> bool | None:
        if key in self._matched:
            self._matched.move_to_end(key)
            return True
        if key in self._failed:
            self._failed.move_to_end(key)
            return False
        return None

    def _finished(self, key: bytes, done: asyncio.Future[bool]) -> None:
        assert self._slots is not None
        self._slots.release()
        if done.cancelled() or done.exception() is not None:
            return
        matched = done.result()
        remembered, limit = (self._matched, self._matched_limit) if matched else (self._failed, self._failed_limit)
        remembered[key] = None
        if len(remembered) > limit:
            remembered.popitem(last=False)

    def close(self) -> None:
        """Refuse new checks and drop those not yet started; checks already running end on their own."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    def join(self) -> None:
        """Wait for the checks already running (at most one bcrypt check per worker) to end."""
        self._executor.shutdown(wait=True)


def _checkpw(password: bytes, hashed: bytes | None, decoy_cost: int) -> bool:
    """bcrypt check; an unknown user (no hash) is checked against a decoy of that cost and always fails."""
    try:
        matches = _bcrypt().checkpw(password[:72], hashed or decoy_hash(decoy_cost))
    except ValueError:  # a hash the library cannot read: the password does not match it
        return False
    return matches and hashed is not None
