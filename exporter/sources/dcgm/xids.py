"""XID errors from DCGM's field 230 (DCGM_FI_DEV_XID_ERRORS), counted per GPU and MIG instance.

DCGM's cache manager waits for NVML's XID events itself and records each XID as a new value of
field 230 on the entity that raised it: the GPU when GPU-wide, the GPU_I entity for a GPU instance,
the GPU_CI entity for a compute instance. Each cycle the source reads the latest value of every such
entity; a value newer (by its `ts`) than the last one counted is one XID. DCGM hands out only the
latest value per entity here, so XIDs on one entity closer together than one sampling interval
count once. Values stamped before the source started are history, not counted. The timestamps
seen are kept across watch rebuilds, so an XID recorded while its GPU was failing is still counted
once the GPU reads again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from exporter.sources.dcgm.mapping import ValueDecoder
from exporter.sources.xid import XidCounter


class DcgmXids:
    """Turns new values of field 230 into counts; one per source."""

    def __init__(self, counter: XidCounter, since_us: int | None = None) -> None:
        self.counter = counter
        self._since_us = int(time.time() * 1e6) if since_us is None else since_us
        self._seen: dict[tuple[int, int], int] = {}  # (entity group, entity ID) -> ts of the last value counted

    def count(
        self,
        index: int,
        scopes: Mapping[tuple[int, int], tuple[int | None, int | None]],
        values: Iterable[Any],
        decoder: ValueDecoder,
    ) -> None:
        """Count each value newer than the last one counted on its entity, on GPU `index` and its (gi, ci)."""
        for fv in values:
            entity = (int(fv.entityGroupId), int(fv.entityId))
            scope = scopes.get(entity)
            number = decoder.decode(fv).number
            if scope is None or number is None:
                continue  # no XID yet (NO_DATA), a blank, or an entity of another GPU
            ts = int(fv.ts)
            if ts <= self._seen.get(entity, self._since_us):
                continue
            self._seen[entity] = ts
            self.counter.record(index, int(number), *scope)
