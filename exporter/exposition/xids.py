"""XID errors in the exposition: the native counter's rows, and dcgm-exporter's gauge of the last XID.

`mig_gpu_xid_errors_total{gpu, xid, gi, ci}` has one series per label set seen since the exporter
started (the snapshot's XidErrors, kept apart from the GPUs' samples), so a GPU whose reads fail after
an XID still shows it, and a destroyed instance keeps its series. dcgm-exporter's
DCGM_FI_DEV_XID_ERRORS is a gauge of the last XID code on the GPU (0 before any), whatever instance
raised it: served the same way under `--names dcgm`, where the source reads XIDs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from exporter.exposition.series import Reader, Row, RowOf, Rows
from exporter.model import Entity, Field, Snapshot

DCGM_NAME = "DCGM_FI_DEV_XID_ERRORS"
DCGM_HELP = "Value of the last XID error encountered."  # dcgm-exporter's default-counters.csv


def xid_rows(snapshot: Snapshot) -> list[Row]:
    """One row per (GPU, XID, GI, CI) seen since start, whether or not the instance still exists."""
    rows: list[Row] = []
    for key in sorted(snapshot.xids.counts, key=lambda k: k.sort_key()):
        gi, ci = ("" if v is None else str(v) for v in (key.gi, key.ci))
        rows.append(((str(key.gpu), str(key.xid), gi, ci), snapshot.xids.counts[key]))
    return rows


class LastXid(Reader):
    """The key is a GPU entity: the last XID seen on that GPU, 0 before any; absent where XIDs are not read."""

    __slots__ = ()

    def compile(self, key: Entity, row_of: RowOf) -> tuple[int, int]:
        return row_of(key), key.gpu

    def values(self, snapshot: Snapshot, rows: Rows, keys: Sequence[tuple[int, int]]) -> Iterable[float | None]:
        last = snapshot.xids.last
        return [
            None if (values := rows[row]) is None or Field.XID_ERRORS not in values else last.get(gpu, 0)
            for row, gpu in keys
        ]
