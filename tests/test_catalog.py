"""The MIG profile catalog: every board's profiles and the lookup from driver model names."""

from __future__ import annotations

import pytest

from exporter.mig.catalog import BOARDS, DEFAULT_BOARD, UnknownBoardError, UnknownProfileError, board, board_for_model


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-80gb"),
        ("NVIDIA H100 PCIe", "h100-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", "a100-80gb"),
        ("NVIDIA H100 NVL", "h100-94gb"),
        ("NVIDIA H200", "h200-141gb"),
        ("  nvidia   h200 ", "h200-141gb"),
        ("H100 80GB HBM3", "h100-80gb"),
    ],
)
def test_driver_model_names_map_to_their_board(model: str, key: str) -> None:
    """The model string NVML reports picks the board, ignoring case, spacing and the vendor prefix."""
    found = board_for_model(model)
    assert found is not None and found.key == key


@pytest.mark.parametrize("model", ["Tesla T4", "NVIDIA A30", "NVIDIA L4"])
def test_gpus_without_a_catalog_entry_have_no_board(model: str) -> None:
    """GPUs the catalog does not describe (no MIG, or another geometry) get no board rather than a wrong one."""
    assert board_for_model(model) is None


@pytest.mark.parametrize("key", sorted(BOARDS))
def test_every_board_offers_the_seven_profiles_with_nvml_ids_and_limits(key: str) -> None:
    """Each board lists 1g, 1g+me, double-memory 1g, 2g, 3g, 4g and 7g with NVML's IDs and counts."""
    b = board(key)
    assert [p.id for p in b.profiles] == [19, 20, 15, 14, 9, 5, 0]
    assert [p.max_count for p in b.profiles] == [7, 1, 4, 3, 2, 1, 1]
    assert [(p.compute_slices, p.memory_slices) for p in b.profiles] == [
        (1, 1),
        (1, 1),
        (1, 2),
        (2, 2),
        (3, 4),
        (4, 4),
        (7, 8),
    ]
    assert [p.name.split(".")[0] for p in b.profiles] == ["1g", "1g", "1g", "2g", "3g", "4g", "7g"]
    assert b.profiles[1].is_media_extension and b.profiles[1].name == b.profiles[0].name + "+me"
    assert all(0 < p.memory_gib <= b.memory_gib for p in b.profiles)
    assert [b.ci_profile(b.profiles[4], f"1c.{b.profiles[4].name}").max_count] == [3]


def test_board_memory_per_slice_matches_the_profile_names() -> None:
    """Profile names carry each board's memory per slice: 5, 10, 12, 18 GB for one slice."""
    assert [board(k).profiles[0].name for k in sorted(BOARDS)] == ["1g.5gb", "1g.10gb", "1g.10gb", "1g.12gb", "1g.18gb"]
    assert board("h200-141gb").profile("7g.141gb").sms == 132
    assert board("a100-40gb").profile("3g.20gb").sms == 42


def test_unknown_names_list_the_valid_ones() -> None:
    """Unknown boards and profiles raise errors that list what is valid."""
    with pytest.raises(UnknownBoardError, match=r"'b200' \(valid: a100-40gb, a100-80gb, h100-80gb"):
        board("b200")
    with pytest.raises(UnknownProfileError, match=r"'1g.20gb' for a100-40gb \(valid: 1g.5gb, "):
        board("a100-40gb").profile("1g.20gb")
    assert DEFAULT_BOARD == "h100-80gb"
