"""Scenario files: the simulated node (GPUs, MIG layouts, workloads), loaded from YAML and validated.

Every error names the file and the key path of the bad value, e.g.
`dgx.yaml: gpus[2].instances[0].profile: unknown MIG profile '3g.50gb' for h100-80gb (valid: ...)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from exporter import yamlfile
from exporter.excerpt import excerpt
from exporter.mig.catalog import BOARDS, DEFAULT_BOARD, Board, GiProfile, UnknownProfileError
from exporter.mig.placement import LayoutError, Placement, find_placement, validate_layout
from exporter.sources.synthetic.patterns import PATTERNS, Idle, Pattern, Steady


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names the file and the bad key."""


DEFAULT_RATIOS: Mapping[str, float] = {
    "sm_active": 0.9,
    "sm_occupancy": 0.55,
    "tensor_active": 0.4,
    "dram_active": 0.35,
}


@dataclass(frozen=True, slots=True)
class ComputeInstanceSpec:
    """A compute instance and the activity of the work running on it."""

    profile: str
    activity: Pattern
    ratios: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """A GPU instance: profile, placement, id, memory use and its compute instances."""

    profile: GiProfile
    start: int
    gi: int
    memory: Pattern
    compute_instances: tuple[ComputeInstanceSpec, ...]


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One simulated GPU; `activity`/`memory`/`ratios` apply when MIG is disabled."""

    board: Board
    mig: bool
    instances: tuple[InstanceSpec, ...]
    activity: Pattern
    memory: Pattern
    ratios: Mapping[str, float]


FAULT_KINDS = ("hang", "fail")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault injected into one GPU's sampling, `after` seconds from the source's start, for `duration` s.

    `hang`: the sampling call does not return until the fault ends (a hung driver call); `fail`: it
    raises a per-GPU error with `reason` (the `reason` label of mig_exporter_errors_total).
    """

    gpu: int
    kind: str
    after: float = 0.0
    duration: float = float("inf")
    reason: str = "injected"

    def active(self, elapsed: float) -> bool:
        """Whether the fault is on `elapsed` seconds after the source started."""
        return self.after <= elapsed < self.after + self.duration


MAX_XID = 0xFFFF  # XID codes are small integers (NVIDIA documents them below 200)


@dataclass(frozen=True, slots=True)
class XidSpec:
    """An XID error the driver reports `after` seconds from the source's start (or the fake driver's install).

    `gi` (and `ci` within it) name the MIG instance that raises it; without `gi` it is GPU-wide.
    """

    gpu: int
    xid: int
    after: float = 0.0
    gi: int | None = None
    ci: int | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole simulated node."""

    name: str
    seed: int
    driver_version: str
    gpus: tuple[GpuSpec, ...]
    faults: tuple[FaultSpec, ...] = ()
    xids: tuple[XidSpec, ...] = ()


BUILTIN = ("demo", "dgx-h100")
TOP_KEYS = {"name", "seed", "driver_version", "gpus", "faults", "xids"}
MAX_TEXT = 64  # characters in name, driver_version (a label value) and a fault's reason

# Pattern parameters that are not levels (levels are 0..1): seconds and hours.
_PARAMETER_RANGES: Mapping[str, tuple[float | None, float | None]] = {
    "period": (1.0, None),
    "offset": (None, None),
    "peak_hour": (0.0, 24.0),
}


def load(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    if name_or_path in BUILTIN:
        text = resources.files("exporter.sources.synthetic").joinpath(f"scenarios/{name_or_path}.yaml").read_text()
        return parse(text, origin=f"scenario {name_or_path}")
    path = Path(name_or_path)
    if not path.is_file():
        raise ScenarioError(
            f"scenario {excerpt(name_or_path)} is neither a built-in ({', '.join(BUILTIN)}) nor a readable file"
        )
    try:
        text = yamlfile.read(path)
    except yamlfile.YamlError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return parse(text, origin=str(path))


def parse(text: str, origin: str = "<scenario>") -> Scenario:
    """Parse and validate scenario YAML."""
    try:
        doc = yamlfile.parse(text)
    except yamlfile.YamlError as exc:
        raise ScenarioError(f"{origin}: {exc}") from None
    return _Reader(origin).scenario(doc)


class _Reader:
    """Walks the parsed YAML, keeping the key path for error messages."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, path: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.origin}: {path}: {message}" if path else f"{self.origin}: {message}")

    def mapping(
        self, value: Any, path: str, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                name = key if isinstance(key, str) and key.isidentifier() else excerpt(key)
                raise self.fail(
                    f"{path}.{name}" if path else name, f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )
        for key in sorted(required - value.keys()):
            raise self.fail(f"{path}.{key}" if path else key, "missing required key")
        return value

    def number(self, value: Any, path: str, lo: float | None = None, hi: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number, got {excerpt(value)}")
        if not math.isfinite(value):
            raise self.fail(path, f"expected a finite number, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(path, f"{excerpt(value)} is out of range {lo}..{hi}")
        return float(value)

    def integer(self, value: Any, path: str, lo: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {excerpt(value)}")
        if value < lo:
            raise self.fail(path, f"{excerpt(value)} must be at least {lo}")
        return value

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.isprintable() or not 0 < len(value) <= MAX_TEXT:
            raise self.fail(path, f"expected up to {MAX_TEXT} printable characters, got {excerpt(value)}")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {type(value).__name__}")
        return value

    def scenario(self, doc: Any) -> Scenario:
        if isinstance(doc, dict) and doc and not TOP_KEYS & doc.keys():
            # Some other file (a password file, say): say so, and quote none of it.
            raise self.fail("", f"not a scenario (a mapping of {', '.join(sorted(TOP_KEYS))}, with gpus required)")
        top = self.mapping(doc, "", TOP_KEYS, {"gpus"})
        gpus_raw = self.sequence(top["gpus"], "gpus")
        if not gpus_raw:
            raise self.fail("gpus", "a scenario needs at least one GPU")
        name = self.text(top.get("name", "custom"), "name")
        driver = self.text(top.get("driver_version", "550.127.05"), "driver_version")
        seed = self.integer(top.get("seed", 0), "seed")
        gpus = tuple(self.gpu(g, f"gpus[{i}]") for i, g in enumerate(gpus_raw))
        faults_raw = self.sequence(top.get("faults", []), "faults")
        faults = tuple(self.fault(f, f"faults[{i}]", len(gpus)) for i, f in enumerate(faults_raw))
        xids_raw = self.sequence(top.get("xids", []), "xids")
        xids = tuple(self.xid(x, f"xids[{i}]", gpus) for i, x in enumerate(xids_raw))
        return Scenario(name, seed, driver, gpus, faults, xids)

    def xid(self, raw: Any, path: str, gpus: tuple[GpuSpec, ...]) -> XidSpec:
        """One injected XID: on an existing GPU and, when given, an existing GPU instance and compute instance."""
        m = self.mapping(raw, path, {"gpu", "xid", "after", "gi", "ci"}, {"gpu", "xid"})
        gpu = self.integer(m["gpu"], f"{path}.gpu")
        if gpu >= len(gpus):
            raise self.fail(f"{path}.gpu", f"GPU {gpu} does not exist (the scenario has GPUs 0..{len(gpus) - 1})")
        xid = self.integer(m["xid"], f"{path}.xid", lo=1)
        if xid > MAX_XID:
            raise self.fail(f"{path}.xid", f"{xid} is not an XID code (1..{MAX_XID})")
        gi = ci = None
        if "gi" in m:
            gi = self.integer(m["gi"], f"{path}.gi")
            spec = gpus[gpu]
            instances = {inst.gi: inst for inst in spec.instances} if spec.mig else {}
            if gi not in instances:
                have = (", ".join(map(str, sorted(instances))) or "none") if spec.mig else "none: MIG is disabled"
                raise self.fail(f"{path}.gi", f"GPU {gpu} has no GPU instance {gi} (it has: {have})")
            if "ci" in m:
                ci = self.integer(m["ci"], f"{path}.ci")
                count = len(instances[gi].compute_instances)
                if ci >= count:
                    raise self.fail(
                        f"{path}.ci", f"GPU instance {gi} has no compute instance {ci} (it has 0..{count - 1})"
                    )
        elif "ci" in m:
            raise self.fail(f"{path}.ci", "a compute instance needs its GPU instance: give gi as well")
        return XidSpec(
            gpu=gpu, xid=xid, after=self.number(m.get("after", 0.0), f"{path}.after", 0.0, None), gi=gi, ci=ci
        )

    def fault(self, raw: Any, path: str, gpu_count: int) -> FaultSpec:
        m = self.mapping(raw, path, {"gpu", "kind", "after", "duration", "reason"}, {"gpu", "kind"})
        gpu = self.integer(m["gpu"], f"{path}.gpu")
        if gpu >= gpu_count:
            raise self.fail(f"{path}.gpu", f"GPU {gpu} does not exist (the scenario has GPUs 0..{gpu_count - 1})")
        if m["kind"] not in FAULT_KINDS:
            raise self.fail(f"{path}.kind", f"unknown fault {excerpt(m['kind'])} (valid: {', '.join(FAULT_KINDS)})")
        reason = m.get("reason", "injected")
        if (
            not isinstance(reason, str)
            or not reason.replace("_", "").isalnum()
            or not reason.isascii()
            or len(reason) > MAX_TEXT
        ):
            raise self.fail(
                f"{path}.reason",
                f"expected a short token of letters, digits and _ (at most {MAX_TEXT}), got {excerpt(reason)}",
            )
        return FaultSpec(
            gpu=gpu,
            kind=m["kind"],
            after=self.number(m.get("after", 0.0), f"{path}.after", 0.0, None),
            duration=self.number(m["duration"], f"{path}.duration", 0.0, None) if "duration" in m else float("inf"),
            reason=reason,
        )

    def gpu(self, raw: Any, path: str) -> GpuSpec:
        m = self.mapping(raw, path, {"board", "mig", "instances", "activity", "memory", "ratios"})
        key = m.get("board", DEFAULT_BOARD)
        if not isinstance(key, str) or key not in BOARDS:
            raise self.fail(f"{path}.board", f"unknown GPU board {excerpt(key)} (valid: {', '.join(BOARDS)})")
        board = BOARDS[key]
        mig = m.get("mig", "instances" in m)
        if not isinstance(mig, bool):
            raise self.fail(f"{path}.mig", f"expected true or false, got {excerpt(mig)}")
        if not mig and "instances" in m:
            raise self.fail(f"{path}.instances", "a GPU with mig: false has no instances")
        if mig and ("activity" in m):
            raise self.fail(f"{path}.activity", "a MIG-enabled GPU takes activity per instance, not per GPU")
        instances = self.instances(board, self.sequence(m.get("instances", []), f"{path}.instances"), path)
        return GpuSpec(
            board=board,
            mig=mig,
            instances=instances,
            activity=self.pattern(m.get("activity", "idle"), f"{path}.activity"),
            memory=self.pattern(m.get("memory", "idle"), f"{path}.memory"),
            ratios=self.ratios(m.get("ratios", {}), f"{path}.ratios"),
        )

    def instances(self, board: Board, raws: list[Any], gpu_path: str) -> tuple[InstanceSpec, ...]:
        allowed = {"profile", "start", "gi", "activity", "memory", "ratios", "compute_instances"}
        parsed: list[tuple[int, dict[str, Any], GiProfile]] = []
        for i, raw in enumerate(raws):
            path = f"{gpu_path}.instances[{i}]"
            m = self.mapping(raw, path, allowed, {"profile"})
            try:
                profile = board.profile(str(m["profile"]))
            except UnknownProfileError as exc:
                raise self.fail(f"{path}.profile", str(exc)) from None
            parsed.append((i, m, profile))
        starts = self.place(board, parsed, gpu_path)
        used_ids: set[int] = set()
        next_id = 1
        out = []
        for i, m, profile in parsed:
            path = f"{gpu_path}.instances[{i}]"
            if "gi" in m:
                gi = self.integer(m["gi"], f"{path}.gi")
            else:
                while next_id in used_ids or any(o.get("gi") == next_id for _, o, _ in parsed):
                    next_id += 1
                gi = next_id
            if gi in used_ids:
                raise self.fail(f"{path}.gi", f"GPU instance id {gi} is used twice on this GPU")
            used_ids.add(gi)
            out.append(
                InstanceSpec(
                    profile=profile,
                    start=starts[i],
                    gi=gi,
                    memory=self.pattern(m.get("memory", "idle"), f"{path}.memory"),
                    compute_instances=self.compute_instances(board, profile, m, path),
                )
            )
        return tuple(out)

    def place(self, board: Board, parsed: list[tuple[int, dict[str, Any], GiProfile]], gpu_path: str) -> dict[int, int]:
        """Explicit starts as given; the others wherever a valid layout exists."""
        starts: dict[int, int] = {}
        for i, m, _ in parsed:
            if "start" in m:
                starts[i] = self.integer(m["start"], f"{gpu_path}.instances[{i}].start")
        fixed = [Placement(p, starts[i]) for i, _, p in parsed if i in starts]
        try:
            validate_layout(board, fixed)
        except LayoutError as exc:
            raise self.fail(f"{gpu_path}.instances", str(exc)) from None
        free = [(i, p) for i, _, p in parsed if i not in starts]
        placed = find_placement(board, [p for _, p in free], fixed)
        if placed is None:
            names = " + ".join(p.name for _, _, p in parsed)
            raise self.fail(f"{gpu_path}.instances", f"{names} has no valid placement on {board.key}")
        for (i, _), placement in zip(free, placed, strict=True):
            starts[i] = placement.start
        return starts

    def compute_instances(
        self, board: Board, profile: GiProfile, m: dict[str, Any], path: str
    ) -> tuple[ComputeInstanceSpec, ...]:
        ratios = self.ratios(m.get("ratios", {}), f"{path}.ratios")
        if "compute_instances" not in m:
            activity = self.pattern(m.get("activity", "idle"), f"{path}.activity")
            return (ComputeInstanceSpec(profile.name, activity, ratios),)
        if "activity" in m:
            raise self.fail(f"{path}.activity", "give activity per compute instance when compute_instances is set")
        raws = self.sequence(m["compute_instances"], f"{path}.compute_instances")
        if not raws:
            raise self.fail(f"{path}.compute_instances", "needs at least one compute instance")
        out = []
        used = 0
        for j, raw in enumerate(raws):
            cpath = f"{path}.compute_instances[{j}]"
            c = self.mapping(raw, cpath, {"profile", "activity", "ratios"}, {"profile"})
            try:
                ci_profile = board.ci_profile(profile, str(c["profile"]))
            except UnknownProfileError as exc:
                raise self.fail(f"{cpath}.profile", str(exc)) from None
            used += ci_profile.compute_slices
            if used > profile.compute_slices:
                raise self.fail(
                    f"{path}.compute_instances",
                    f"compute instances need {used} compute slices, {profile.name} has {profile.compute_slices}",
                )
            out.append(
                ComputeInstanceSpec(
                    ci_profile.name,
                    self.pattern(c.get("activity", "idle"), f"{cpath}.activity"),
                    self.ratios(c.get("ratios", {}), f"{cpath}.ratios") if "ratios" in c else ratios,
                )
            )
        return tuple(out)

    def ratios(self, raw: Any, path: str) -> Mapping[str, float]:
        m = self.mapping(raw, path, set(DEFAULT_RATIOS))
        out = dict(DEFAULT_RATIOS)
        for key, value in m.items():
            out[key] = self.number(value, f"{path}.{key}", 0.0, 1.0)
        return out

    def pattern(self, raw: Any, path: str) -> Pattern:
        """`idle`, a bare number (steady level), or a mapping with `pattern` and its parameters."""
        if raw == "idle":
            return Idle()
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return Steady(self.number(raw, path, 0.0, 1.0))
        if not isinstance(raw, dict):
            raise self.fail(path, f"expected 'idle', a level 0..1 or a mapping with 'pattern', got {excerpt(raw)}")
        kind = raw.get("pattern")
        if not isinstance(kind, str) or kind not in PATTERNS:
            raise self.fail(f"{path}.pattern", f"unknown pattern {excerpt(kind)} (valid: {', '.join(PATTERNS)})")
        cls = PATTERNS[kind]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = {n for n, f in fields.items() if f.default is dataclasses.MISSING}
        m = self.mapping(raw, path, set(fields) | {"pattern"}, required)
        params: dict[str, float] = {}
        for key, value in m.items():
            if key == "pattern":
                continue
            lo, hi = _PARAMETER_RANGES.get(key, (0.0, 1.0))
            params[key] = self.number(value, f"{path}.{key}", lo, hi)
        pattern: Pattern = cls(**params)
        return pattern
