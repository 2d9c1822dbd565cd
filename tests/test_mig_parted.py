"""nvidia-mig-parted config documents built from planned layouts."""

from __future__ import annotations

import pytest

from exporter.mig.catalog import board
from exporter.mig.parted import mig_parted_config
from exporter.mig.placement import Placement
from exporter.mig.planner import pack


def test_identical_gpus_share_one_entry_that_applies_to_all_devices() -> None:
    """When every GPU has the same counts, one entry with devices: all covers a node of any size."""
    b = board("a100-80gb")
    layout = [Placement(b.profile("3g.40gb"), 0), Placement(b.profile("3g.40gb"), 4)]
    doc = mig_parted_config(b, [layout, layout], "two-3g")
    assert doc == {
        "version": "v1",
        "mig-configs": {"two-3g": [{"devices": "all", "mig-enabled": True, "mig-devices": {"3g.40gb": 2}}]},
    }


def test_a_packed_fleet_maps_each_gpu_index_to_its_counts() -> None:
    """Every GPU index appears once, and the counts add up to the packed demand."""
    b = board("h200-141gb")
    demand = [b.profile("1g.18gb")] * 9 + [b.profile("2g.35gb")] * 2 + [b.profile("7g.141gb")]
    layouts = pack(b, demand)
    entries = mig_parted_config(b, layouts, "fleet")["mig-configs"]["fleet"]
    indexes = sorted(i for e in entries for i in e["devices"])
    assert indexes == list(range(len(layouts)))
    totals: dict[str, int] = {}
    for e in entries:
        for name, n in e["mig-devices"].items():
            totals[name] = totals.get(name, 0) + n * len(e["devices"])
    assert totals == {"1g.18gb": 9, "2g.35gb": 2, "7g.141gb": 1}


def test_a_profile_of_another_board_or_an_empty_name_is_refused() -> None:
    """Mixing boards or leaving the config unnamed raises instead of writing a config mig-parted would reject."""
    h100, a100 = board("h100-80gb"), board("a100-40gb")
    with pytest.raises(ValueError, match=r"'1g\.5gb' for h100-80gb"):
        mig_parted_config(h100, [[Placement(a100.profile("1g.5gb"), 0)]], "x")
    with pytest.raises(ValueError, match="name must not be empty"):
        mig_parted_config(h100, [[]], " ")
    with pytest.raises(ValueError, match="at least one GPU layout"):
        mig_parted_config(h100, [], "x")
