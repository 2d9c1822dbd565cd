"""Units and how values are shown to people: ratios as percentages, bytes as GiB ("-" where a value is missing)."""

from __future__ import annotations

GIB = 1024**3


def percent(ratio: float | None, decimals: int = 0) -> str:
    """A 0..1 ratio as a percentage: `percent(0.417)` is "42%", `percent(0.417, 1)` "41.7%"."""
    return "-" if ratio is None else f"{ratio:.{decimals}%}"


def gib(size_bytes: float | None, decimals: int = 1, *, unit: bool = True) -> str:
    """Bytes in GiB: "31.6 GiB" (or "31.6" without the unit, for "31.6 / 39.5 GiB")."""
    if size_bytes is None:
        return "-"
    return f"{size_bytes / GIB:.{decimals}f}" + (" GiB" if unit else "")
