"""The XID counter: counts by GPU, XID and instance, the last XID per GPU, a bounded number of label sets."""

from __future__ import annotations

from exporter.model import XidKey
from exporter.sources.xid import NO_INSTANCE_ID, XidCounter, instance_ids


def test_driver_ids_map_to_scopes() -> None:
    """0xFFFFFFFF means no instance: GPU-wide, or a GPU instance without a compute instance."""
    assert instance_ids(NO_INSTANCE_ID, NO_INSTANCE_ID) == (None, None)
    assert instance_ids(2, NO_INSTANCE_ID) == (2, None)
    assert instance_ids(2, 0) == (2, 0)
    assert instance_ids(NO_INSTANCE_ID, 0) == (None, None)  # a CI id without its GI names nothing


def test_counts_last_and_totals() -> None:
    """Counts add up per key; `last` is the latest XID per GPU; a snapshot is reused until something changes."""
    counter = XidCounter()
    counter.record(0, 43, 1, 0)
    counter.record(0, 43, 1, 0)
    counter.record(0, 79)
    counter.record(1, 94, 3)
    first = counter.snapshot()
    assert first.counts == {XidKey(0, 43, 1, 0): 2, XidKey(0, 79): 1, XidKey(1, 94, 3): 1}
    assert first.last == {0: 79, 1: 94}
    assert counter.total(0) == 3 and counter.total(5) == 0
    assert counter.snapshot() is first
    counter.record(1, 94, 3)
    assert counter.snapshot().counts[XidKey(1, 94, 3)] == 2 and first.counts[XidKey(1, 94, 3)] == 1


def test_label_sets_are_bounded() -> None:
    """Past the limit new label sets are dropped; the ones already counted go on counting."""
    counter = XidCounter(limit=2)
    for xid in (1, 2, 3):
        counter.record(0, xid)
    counter.record(0, 1)
    assert counter.snapshot().counts == {XidKey(0, 1): 2, XidKey(0, 2): 1}
