"""MIG profile catalog per board (see MIG-FACTS.md): names, NVML IDs, counts, slices, placements."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.excerpt import excerpt
from exporter.units import GIB

COMPUTE_SLICES = 7
MEMORY_SLICES = 8


class UnknownProfileError(ValueError):
    """A profile name that the board does not offer."""


class UnknownBoardError(ValueError):
    """A board key that the catalog does not hold."""


@dataclass(frozen=True, slots=True)
class GiProfile:
    """A GPU-instance profile: how many slices it takes and where it may start."""

    name: str  # e.g. "3g.40gb"
    id: int  # NVML GPU-instance profile ID
    max_count: int
    compute_slices: int
    memory_slices: int  # also the placement size, in memory slices
    sms: int
    memory_gib: float  # usable memory
    starts: tuple[int, ...]  # allowed placement starts, in memory slices

    @property
    def memory_bytes(self) -> int:
        """Usable memory in bytes."""
        return int(self.memory_gib * GIB)

    @property
    def is_media_extension(self) -> bool:
        """True for `+me` profiles, which carry the media engines (at most one per GPU)."""
        return self.name.endswith("+me")


@dataclass(frozen=True, slots=True)
class CiProfile:
    """A compute-instance profile inside a GPU-instance profile."""

    name: str  # e.g. "1c.3g.40gb", or the GI's name when it spans the GI
    nvml_enum: int  # NVML_COMPUTE_INSTANCE_PROFILE_* value
    compute_slices: int
    max_count: int


# Compute-instance options by GI compute slices: (CI compute slices, max count).
_CI_OPTIONS: dict[int, tuple[tuple[int, int], ...]] = {
    7: ((1, 7), (2, 3), (3, 2), (4, 1), (7, 1)),
    4: ((1, 4), (2, 2), (4, 1)),
    3: ((1, 3), (2, 1), (3, 1)),
    2: ((1, 2), (2, 1)),
    1: ((1, 1),),
}
_CI_ENUM = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4}


@dataclass(frozen=True, slots=True)
class Board:
    """A MIG-capable GPU model and the GPU-instance profiles it offers."""

    key: str  # e.g. "h100-80gb"
    title: str
    model_names: tuple[str, ...]  # what the driver reports, matched case-insensitively
    memory_gib: float
    profiles: tuple[GiProfile, ...]

    def profile(self, name: str) -> GiProfile:
        """The profile with this name; raises UnknownProfileError naming the valid ones."""
        for p in self.profiles:
            if p.name == name:
                return p
        valid = ", ".join(p.name for p in self.profiles)
        raise UnknownProfileError(f"unknown MIG profile {excerpt(name)} for {self.key} (valid: {valid})")

    def profile_by_id(self, profile_id: int) -> GiProfile | None:
        """The profile with this NVML ID, if the board has it."""
        for p in self.profiles:
            if p.id == profile_id:
                return p
        return None

    def ci_profiles(self, gi_profile: GiProfile) -> tuple[CiProfile, ...]:
        """The compute-instance profiles available inside a GPU instance of this profile."""
        out = []
        for slices, count in _CI_OPTIONS[gi_profile.compute_slices]:
            name = gi_profile.name if slices == gi_profile.compute_slices else f"{slices}c.{gi_profile.name}"
            out.append(CiProfile(name, _CI_ENUM[slices], slices, count))
        return tuple(out)

    def ci_profile(self, gi_profile: GiProfile, name: str) -> CiProfile:
        """The CI profile with this name inside `gi_profile`; raises UnknownProfileError."""
        options = self.ci_profiles(gi_profile)
        for c in options:
            if c.name == name:
                return c
        valid = ", ".join(c.name for c in options)
        raise UnknownProfileError(
            f"unknown compute-instance profile {excerpt(name)} in {gi_profile.name} (valid: {valid})"
        )


def _profiles(
    sizes: tuple[str, str, str, str, str, str, str],
    gib: tuple[float, float, float, float, float, float, float],
    sms: tuple[int, int, int, int, int, int, int],
) -> tuple[GiProfile, ...]:
    """The seven profiles every current MIG board offers, with its names, memory and SM counts.

    Order: 1g, 1g+me, 1g double memory, 2g, 3g, 4g, 7g. IDs, counts, slices and placements
    are the same on A100 and H100-class boards.
    """
    shape = (
        # id, max, compute, memory, starts
        (19, 7, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
        (20, 1, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
        (15, 4, 1, 2, (0, 2, 4, 6)),
        (14, 3, 2, 2, (0, 2, 4)),
        (9, 2, 3, 4, (0, 4)),
        (5, 1, 4, 4, (0,)),
        (0, 1, 7, 8, (0,)),
    )
    return tuple(
        GiProfile(name, pid, count, c, m, sm, g, starts)
        for name, g, sm, (pid, count, c, m, starts) in zip(sizes, gib, sms, shape, strict=True)
    )


# SM counts per profile. H100 NVL and H200 reuse the H100 80GB figures: they have the same 132-SM
# die and MIG geometry (1g = 16 SMs is confirmed on H200 by `nvidia-smi mig -lgip`; the rest is assumed).
_AMPERE_SMS = (14, 14, 14, 28, 42, 56, 98)
_HOPPER_SMS = (16, 16, 26, 32, 60, 64, 132)

BOARDS: dict[str, Board] = {
    b.key: b
    for b in (
        Board(
            key="a100-40gb",
            title="A100 40GB",
            model_names=("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB PCIe"),
            memory_gib=40,
            profiles=_profiles(
                ("1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
                (4.75, 4.75, 9.75, 9.75, 19.62, 19.62, 39.50),
                _AMPERE_SMS,
            ),
        ),
        Board(
            key="a100-80gb",
            title="A100 80GB",
            model_names=("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-80GB"),
            memory_gib=80,
            profiles=_profiles(
                ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
                (9.50, 9.50, 19.50, 19.50, 39.25, 39.25, 79.25),
                _AMPERE_SMS,
            ),
        ),
        Board(
            key="h100-80gb",
            title="H100 80GB",
            model_names=("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100"),
            memory_gib=80,
            profiles=_profiles(
                ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
                (9.75, 9.75, 19.62, 19.62, 39.50, 39.50, 79.25),
                _HOPPER_SMS,
            ),
        ),
        Board(
            key="h100-94gb",
            title="H100 NVL 94GB",
            model_names=("NVIDIA H100 NVL",),
            memory_gib=94,
            profiles=_profiles(
                ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
                (10.75, 10.75, 21.62, 21.62, 46.38, 46.38, 93.12),
                _HOPPER_SMS,
            ),
        ),
        Board(
            key="h200-141gb",
            title="H200 141GB",
            model_names=("NVIDIA H200", "NVIDIA H200 NVL"),
            memory_gib=141,
            # 1g.18gb = 16.00 GiB is what the driver reports; the larger sizes are scaled from it with
            # the H100 ratios (unverified: prefer the driver's profile list at run time).
            profiles=_profiles(
                ("1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
                (16.00, 16.00, 32.25, 32.25, 64.75, 64.75, 130.00),
                _HOPPER_SMS,
            ),
        ),
    )
}

DEFAULT_BOARD = "h100-80gb"


def board(key: str) -> Board:
    """The board with this catalog key; raises UnknownBoardError naming the valid keys."""
    try:
        return BOARDS[key]
    except KeyError:
        raise UnknownBoardError(f"unknown GPU board {excerpt(key)} (valid: {', '.join(BOARDS)})") from None


def _normalize_model(name: str) -> str:
    """Case- and spacing-insensitive model name, without the vendor prefix."""
    words = name.lower().split()
    if words and words[0] == "nvidia":
        words = words[1:]
    return " ".join(words)


_BY_MODEL = {_normalize_model(m): b for b in BOARDS.values() for m in b.model_names}


def board_for_model(model_name: str) -> Board | None:
    """The board matching a driver model name such as "NVIDIA H100 80GB HBM3", if any.

    Matching ignores case, extra spaces and the "NVIDIA" prefix; it is exact otherwise, because
    near names (H100 NVL vs H100 PCIe) have different memory per slice.
    """
    return _BY_MODEL.get(_normalize_model(model_name))
