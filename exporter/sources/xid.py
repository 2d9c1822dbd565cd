"""XID errors counted since the exporter started, by GPU, XID code and the MIG instance that raised them.

Drivers report an XID as an event (NVML) or a field value (DCGM); the sources turn each into a
`record` here, from whatever thread sees it, and the sampler publishes `snapshot()` with every
cycle. Counts never go back while the process runs: a GPU instance that is destroyed keeps its
series with the count it reached (its `gi` label may later name a new instance, whose XIDs add to
it), so `increase()` over the series sees no reset. A restart starts every count from zero, which
Prometheus reads as a counter reset.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from exporter.model import NO_XIDS, XidErrors, XidKey

log = logging.getLogger(__name__)

# NVML and DCGM write this for "no GPU instance / compute instance": a GPU-wide XID.
NO_INSTANCE_ID = 0xFFFFFFFF

# Label sets kept at most: XID codes are a few hundred and a GPU has at most 7 GPU instances and 7
# compute instances, so this is far above a real node; it bounds what a misbehaving driver can add.
MAX_KEYS = 4096


def instance_ids(gi: int, ci: int) -> tuple[int | None, int | None]:
    """The (gi, ci) of an XID as the driver reports them, with NO_INSTANCE_ID as None."""
    if gi == NO_INSTANCE_ID:
        return None, None
    return gi, None if ci == NO_INSTANCE_ID else ci


class XidCounter:
    """Thread-safe counts of XID errors; `snapshot()` is cheap while nothing new arrived."""

    def __init__(self, limit: int = MAX_KEYS) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._counts: Counter[XidKey] = Counter()
        self._totals: Counter[int] = Counter()
        self._last: dict[int, int] = {}
        self._published: XidErrors = NO_XIDS
        self._dirty = False
        self._dropped = 0

    def record(self, gpu: int, xid: int, gi: int | None = None, ci: int | None = None, count: int = 1) -> None:
        """Count `count` XIDs `xid` on `gpu`, raised by GPU instance `gi` / compute instance `ci` (None: GPU-wide)."""
        key = XidKey(gpu, xid, gi, None if gi is None else ci)
        with self._lock:
            if key not in self._counts and len(self._counts) >= self._limit:
                self._dropped += count
                if self._dropped == count:
                    log.warning("more than %d XID label sets; not counting new ones (%s)", self._limit, key)
                return
            first = key not in self._counts
            self._counts[key] += count
            self._totals[gpu] += count
            self._last[gpu] = xid
            self._dirty = True
        where = "" if gi is None else f" GI {gi}" + ("" if key.ci is None else f" CI {key.ci}")
        # The first of each kind is logged; a storm of one XID (an application's fault, repeated) only counts.
        log.log(logging.WARNING if first else logging.DEBUG, "XID %d on GPU %d%s", xid, gpu, where)

    def total(self, gpu: int) -> int:
        """XIDs counted on one GPU, every scope together."""
        with self._lock:
            return self._totals[gpu]

    def snapshot(self) -> XidErrors:
        """The counts so far, as an immutable value (the same object until a new XID arrives)."""
        with self._lock:
            if self._dirty:
                self._published = XidErrors(dict(self._counts), dict(self._last))
                self._dirty = False
            return self._published
