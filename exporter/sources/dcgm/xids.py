"""XID errors from DCGM's field 230 (DCGM_FI_DEV_XID_ERRORS), counted per GPU and MIG instance.

DCGM's cache manager waits for NVML's XID events itself and records each XID as a new value of
field 230 on the entity that raised it: the GPU when GPU-wide, the GPU_I entity for a GPU instance,
the GPU_CI entity for a compute instance. Each cycle the source asks for every value since the last
one counted (`dcgmGetValuesSince_v2` on the GPU's watched groups, whose callback names each value's
entity), so XIDs that come closer together than one interval are each counted. DCGM returns values
at or after the time asked for, so each entity's last counted timestamp keeps a value from counting
twice. Values stamped before the source started are history, not counted. The timestamps are kept
across watch rebuilds, so an XID recorded while its GPU was failing is still counted once the GPU
reads again (while DCGM keeps it: the watch's keep-age).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from exporter.sources.dcgm.mapping import ValueDecoder
from exporter.sources.xid import XidCounter

Reading = tuple[tuple[int, int], int, float | None]  # (entity group, entity ID), ts in us, the XID (None: blank)


def values_since(
    agent: ModuleType, handle: Any, groups: Iterable[tuple[Any, Any]], since_us: int, decoder: ValueDecoder
) -> list[Reading]:
    """Every value of the (group, field group) pairs at or after `since_us`, decoded inside DCGM's callback."""
    found: list[Reading] = []

    def on_values(entity_group: int, entity_id: int, values: Any, count: int, user_data: Any) -> int:
        for i in range(count):  # the values live only for the callback: copy out what is needed
            fv = values[i]
            found.append(((int(entity_group), int(entity_id)), int(fv.ts), decoder.decode(fv).number))
        return 0

    callback = agent.dcgmFieldValueEntityEnumeration_f(on_values)
    for group, field_group in groups:
        agent.dcgmGetValuesSince_v2(handle, group, field_group, since_us, callback, found)
    return found


class DcgmXids:
    """Turns new values of field 230 into counts; one per source."""

    def __init__(self, counter: XidCounter, since_us: int | None = None) -> None:
        self.counter = counter
        self._since_us = int(time.time() * 1e6) if since_us is None else since_us
        self._seen: dict[tuple[int, int], int] = {}  # (entity group, entity ID) -> ts of the last value counted
        self._latest: dict[int, int] = {}  # GPU index -> the newest ts counted on it

    def since(self, index: int) -> int:
        """Where the next read for GPU `index` starts: its newest value counted, or the source's start."""
        return self._latest.get(index, self._since_us)

    def count(
        self, index: int, scopes: Mapping[tuple[int, int], tuple[int | None, int | None]], readings: Iterable[Reading]
    ) -> None:
        """Count each value newer than the last one counted on its entity, on GPU `index` and its (gi, ci)."""
        for entity, ts, number in sorted(readings, key=lambda r: r[1]):
            scope = scopes.get(entity)
            if scope is None or number is None or ts <= self._seen.get(entity, self._since_us):
                continue  # another GPU's entity, a blank, or a value counted (or from before the start)
            self._seen[entity] = ts
            self._latest[index] = max(ts, self._latest.get(index, ts))
            self.counter.record(index, int(number), *scope)
