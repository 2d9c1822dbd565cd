"""`mig-exporter doctor`: what a platform engineer runs first on a new node.

It opens NVML and DCGM as `serve` would, samples the node for a few seconds with the source `serve`
would use, and says on one screen what works and what does not, with the fix: library and driver
versions; per GPU its MIG mode, GPM and the GPU-instance APIs; the DCGM bindings, host engine,
profiling module and each GPU's watches; the kubelet socket; then the series `serve` will publish
per GPU and those it will leave absent, with the reason. Exit 0 when everything the chosen source
needs works, 1 when something does not, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import stat
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.cli.settings import OPTIONS, Settings, add_option_flags, resolve
from exporter.exposition.native import native_families
from exporter.exposition.render import Renderer
from exporter.model import Entity, Field, Gpu, Snapshot
from exporter.sampler import Sampler
from exporter.sources import AUTO_ORDER, SourceOptions, open_source
from exporter.sources.base import Describable, Finding, GpuError, Level, Source, SourceUnavailableError
from exporter.sources.nvml import PRIVILEGE_FIX

OUTPUTS = ("text", "json")
DOCTOR_OPTIONS = ("source", "interval", "deadline", "scenario", "dcgm_bindings", "dcgm_host", "kubelet_socket")
SECTIONS = {"nvml": "NVML", "dcgm": "DCGM", "synthetic": "synthetic"}
TRANSIENT = frozenset({"warming_up", "no_data"})  # reasons that clear after another sample or two
MAX_CYCLES = 5
KUBELET_TIMEOUT_S = 3.0

# What to do about a value the source left absent, by reason.
FIXES = {
    "no_permission": PRIVILEGE_FIX,
    "no_gpm": "this GPU has no GPM (older than Hopper): use --source dcgm for activity",
    "warming_up": "appears from the second sample on (GPM needs two readings)",
    "no_data": "DCGM has no value yet; if it stays absent, check the field with `dcgmi dmon -e <field id>`",
    "not_supported": "the driver or DCGM does not offer it on this GPU",
    "function_not_found": "the NVIDIA driver is too old for this call: upgrade it",
    "profiling_not_supported": "DCGM cannot profile this GPU (`dcgmi profile -l`); on Hopper use --source nvml",
    "module_not_loaded": "DCGM's profiling module is not loaded: run nv-hostengine as root (`dcgmi modules -l`)",
    "requires_root": "run nv-hostengine as root",
    "not_reported_by_dcgm": "DCGM does not report placements; --source nvml does (with privileges)",
    "gpu_lost": "look for Xid 79 (fallen off the bus) in `dmesg`: the GPU needs a reset or a reboot",
    "gpu_is_lost": "look for Xid 79 (fallen off the bus) in `dmesg`: the GPU needs a reset or a reboot",
    "hung": "a driver call has not returned: check that `nvidia-smi` answers",
    "deadline": "a driver call took longer than --deadline: check that `nvidia-smi` answers, or raise --deadline",
    "no_memory_v2": "the driver has no nvmlDeviceGetMemoryInfo_v2, which reports reserved memory: upgrade it",
    "unknown_field": "this DCGM release does not know the field: upgrade DCGM (datacenter-gpu-manager-4)",
    "profiling_multi_pass": "DCGM's profiler cannot watch these fields with the activity ratios in one pass here",
}
NVML_FIX = "install the NVIDIA driver (libnvidia-ml.so.1) and nvidia-ml-py (`pip install nvidia-ml-py`)"


def add_parser(commands: Any) -> None:
    """Add the `doctor` subcommand: the source flags of `serve`, --config and --output."""
    doctor = commands.add_parser(
        "doctor",
        help="check what serve needs on this node and which series it will publish",
        description="Check NVML, DCGM and the kubelet socket, sample the node with the source serve would use, "
        "and list per GPU the series serve will publish and those it will leave absent, with the fix. "
        "Exit 0 when the chosen source works, 1 when not, 2 for bad input.",
    )
    add_option_flags(doctor, [o for o in OPTIONS if o.key in DOCTOR_OPTIONS])
    doctor.add_argument("--output", choices=OUTPUTS, default="text", help="output format (default text)")


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 when the chosen source works, 1 when not."""
    flags = {k: v for k, v in vars(args).items() if k in DOCTOR_OPTIONS or k == "config"}
    settings = resolve(flags)
    logging.disable(logging.WARNING)  # the report says what the sources would log
    try:
        report = asyncio.run(diagnose(settings))
    finally:
        logging.disable(logging.NOTSET)
    print(render_json(report) if args.output == "json" else render_text(report))
    return report.exit_code


@dataclass
class Absent:
    """A value serve leaves out for one GPU, why, and the fix."""

    what: str
    reason: str
    fix: str = ""


@dataclass
class GpuReport:
    """What serve will publish for one GPU."""

    gpu: int
    uuid: str
    model: str
    mig_mode: str
    instances: int
    compute_instances: int
    error: str = ""  # why sampling it failed, when it did
    reason: str = ""  # the error's reason token (gpu_lost, deadline, ...)
    series: dict[str, int] = field(default_factory=dict)  # family name -> series for this GPU
    absent: list[Absent] = field(default_factory=list)


@dataclass
class Report:
    """Everything doctor found."""

    requested: str
    chosen: str | None = None
    findings: list[Finding] = field(default_factory=list)
    gpus: list[GpuReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chosen is not None and not any(f.level is Level.FAIL for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


async def diagnose(settings: Settings) -> Report:
    """Open the sources, sample with the one serve would use, describe them all, check the kubelet."""
    report = Report(requested=settings.source)
    opened: dict[str, Source] = {}
    failures: dict[str, str] = {}
    options = SourceOptions(
        scenario=settings.scenario,
        dcgm_bindings=settings.dcgm_bindings,
        dcgm_host=settings.dcgm_host,
        interval=settings.interval,
    )
    names = ["nvml", "dcgm", *(["synthetic"] if settings.source == "synthetic" else [])]
    for name in names:
        try:
            opened[name] = open_source(name, options)
        except SourceUnavailableError as exc:
            if name == "synthetic":
                raise  # a bad scenario is bad input, as for serve
            failures[name] = str(exc)
    order = AUTO_ORDER if settings.source == "auto" else (settings.source,)
    report.chosen = next((name for name in order if name in opened), None)
    try:
        snapshot = None
        if report.chosen is not None:
            snapshot, errors = await _sample(opened[report.chosen], settings)
            report.gpus = _publication(snapshot, report.chosen, errors)
        for name in names:
            found = await _describe(name, opened.get(name), failures.get(name), report.chosen)
            # A source serve will not use cannot fail the check, unless none of those it would try can start.
            counts = name == report.chosen or (report.chosen is None and name in order)
            report.findings += found if counts else _as_information(found)
        report.findings.append(await _kubelet(settings.kubelet_socket))
        report.findings += _verdict(report, settings.source, [name for name in order if name in failures])
    finally:
        for source in opened.values():
            with contextlib.suppress(Exception):
                await source.close()
    return report


async def _sample(source: Source, settings: Settings) -> tuple[Snapshot, dict[int, tuple[str, str]]]:
    """A few sampling cycles, until no value is still warming up; and why each failing GPU fails."""
    deadline = max(settings.deadline or settings.interval, 5.0)
    sampler = Sampler(source, interval=settings.interval, discovery_interval=3600.0, deadline=deadline)
    snapshot = await sampler.run_once()
    for _ in range(MAX_CYCLES - 1):
        pending = any(r in TRANSIENT for s in snapshot.samples.values() for r in s.unsupported.values())
        if not pending and snapshot.topology.gpus:
            break
        await asyncio.sleep(min(settings.interval, 1.0))
        snapshot = await sampler.run_once()
    errors: dict[int, tuple[str, str]] = {}
    for gpu in snapshot.topology.gpus:
        if gpu.index in snapshot.samples:
            continue
        try:
            await asyncio.wait_for(source.sample(gpu), deadline)
            errors[gpu.index] = ("sampling failed, then succeeded when tried again", "")
        except GpuError as exc:
            errors[gpu.index] = (str(exc), exc.reason)
        except TimeoutError:
            errors[gpu.index] = (f"no answer within {deadline:g}s", "deadline")
    return snapshot, errors


def _publication(snapshot: Snapshot, source: str, errors: dict[int, tuple[str, str]]) -> list[GpuReport]:
    """Per GPU: the series the exposition holds for it, and the values it lacks with the reason."""
    counts: Counter[tuple[str, str]] = Counter()
    text = Renderer((native_families,)).render(snapshot).decode()
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            counts[(sample.labels.get("gpu", ""), metric.name)] += 1
    out = []
    for gpu in snapshot.topology.gpus:
        report = GpuReport(
            gpu=gpu.index,
            uuid=gpu.uuid,
            model=gpu.model,
            mig_mode=gpu.mig_mode,
            instances=len(gpu.instances),
            compute_instances=sum(len(i.compute_instances) for i in gpu.instances),
            error=errors.get(gpu.index, ("", ""))[0],
            reason=errors.get(gpu.index, ("", ""))[1],
            series={name: n for (index, name), n in sorted(counts.items()) if index == str(gpu.index)},
        )
        report.absent = _absent(snapshot, gpu, source)
        out.append(report)
    return out


def _absent(snapshot: Snapshot, gpu: Gpu, source: str) -> list[Absent]:
    sample = snapshot.samples.get(gpu.index)
    if sample is None:
        return [Absent("every value (the GPU is stale)", "sample_failed", "see the error above")]
    absent = [Absent(f.value, reason, FIXES.get(reason, "")) for f, reason in sample.unsupported.items()]
    whole = sample.values.get(Entity(gpu.index), {})
    for fld in (Field.MEMORY_TOTAL, Field.MEMORY_USED, Field.POWER, Field.TEMPERATURE):
        if fld not in whole and fld not in sample.unsupported:
            reason = "no_permission" if source == "nvml" else "not_supported"
            absent.append(Absent(f"{fld.value} (whole GPU)", reason, FIXES.get(reason, "")))
    if gpu.instances and all(i.placement_start is None for i in gpu.instances):
        reason = "no_permission" if source == "nvml" else "not_reported_by_dcgm"
        absent.append(Absent("placement_start", reason, FIXES[reason]))
    return absent


async def _describe(name: str, source: Source | None, failure: str | None, chosen: str | None) -> list[Finding]:
    section = SECTIONS[name]
    if source is None:
        fix = NVML_FIX if name == "nvml" else ""
        return [Finding(section, _failed_part(name, failure or ""), Level.FAIL, failure or "", fix)]
    found: list[Finding] = []
    if name != chosen:  # its per-GPU facts need a discovery of its own
        try:
            await asyncio.wait_for(source.discover(), 30.0)
        except (GpuError, TimeoutError) as exc:
            found.append(Finding(section, "discovery", Level.FAIL, f"discovery failed: {exc}"))
    if isinstance(source, Describable):
        found = [*await source.describe(), *found]
    if name == "nvml":
        found = [_with_binding_version(found[0]), *found[1:]] if found else found
    return found


def _failed_part(name: str, failure: str) -> str:
    """What could not be opened, from the source's one-line error: bindings, library or host engine."""
    if name == "dcgm":
        for part in ("bindings", "library", "host engine"):
            if part in failure.split(":", 1)[0] or part in failure[:60]:
                return part
    return "library" if name == "nvml" else "source"


def _with_binding_version(finding: Finding) -> Finding:
    try:
        version = metadata.version("nvidia-ml-py")
    except metadata.PackageNotFoundError:
        return finding
    return Finding(finding.section, finding.subject, finding.level, f"nvidia-ml-py {version}; {finding.message}")


def _as_information(found: list[Finding]) -> list[Finding]:
    """Problems of a source serve will not use, as information."""
    capped = (Level.WARN, Level.FAIL)
    return [Finding(f.section, f.subject, Level.INFO, f.message, f.fix) if f.level in capped else f for f in found]


async def _kubelet(path: str) -> Finding:
    """Whether pod attribution will work: the socket, the gRPC client, one List call."""
    if not path:
        return Finding("Kubernetes", "kubelet", Level.INFO, "pod attribution off (--kubelet-socket is empty)")
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        is_socket = False
    if not is_socket:
        message = f"no socket at {path}: pod attribution off (normal outside Kubernetes)"
        fix = "in Kubernetes, mount /var/lib/kubelet/pod-resources into the exporter's pod"
        return Finding("Kubernetes", "kubelet", Level.INFO, message, fix)
    try:
        from exporter.kubernetes.podresources import PodResourcesClient
    except Exception as exc:  # missing, or older than the generated client
        message = f"pod attribution off: its gRPC client cannot be loaded ({type(exc).__name__}: {exc})"
        return Finding("Kubernetes", "kubelet", Level.WARN, message, "install grpcio and protobuf (see pyproject.toml)")
    client = PodResourcesClient(path)
    try:
        attribution = await client.list(timeout=KUBELET_TIMEOUT_S)
    except Exception as exc:  # grpc.aio.AioRpcError and the like: reported, never raised
        details = getattr(exc, "details", None)
        details = details() if callable(details) else str(exc)
        message = f"List on {path} failed: {details}"
        return Finding("Kubernetes", "kubelet", Level.WARN, message, "check the kubelet and the socket's permissions")
    finally:
        await client.close()
    count = len(attribution.allocations)
    return Finding("Kubernetes", "kubelet", Level.OK, f"{path}: {count} GPU allocations to containers listed")


def _verdict(report: Report, requested: str, failed: list[str]) -> list[Finding]:
    """The outcome for the chosen source: it opened, found GPUs and read each of them."""
    if report.chosen is None:
        why = " and ".join(SECTIONS[name] for name in failed) + " could not be opened (see above)"
        fix = "fix that, or run on simulated GPUs with --source synthetic"
        return [Finding("serve", f"--source {requested}", Level.FAIL, f"cannot start: {why}", fix)]
    found = []
    if not report.gpus:
        found.append(Finding("serve", f"--source {report.chosen}", Level.FAIL, "found no GPU"))
    for gpu in report.gpus:
        if gpu.error:
            found.append(Finding("serve", f"GPU {gpu.gpu}", Level.FAIL, gpu.error, FIXES.get(gpu.reason, "")))
    return found


def render_json(report: Report) -> str:
    doc = {
        "version": __version__,
        "source": {"requested": report.requested, "chosen": report.chosen},
        "ok": report.ok,
        "exit_code": report.exit_code,
        "checks": [{**asdict(f), "level": f.level.value} for f in report.findings],
        "gpus": [{**asdict(g), "series_total": sum(g.series.values())} for g in report.gpus],
    }
    return json.dumps(doc, indent=2)


def render_text(report: Report) -> str:
    chosen = f"serve --source {report.requested} would use {report.chosen}" if report.chosen else "no usable source"
    lines = [f"mig-exporter doctor {__version__}: {chosen}"]
    sections: dict[str, list[Finding]] = {}
    for finding in report.findings:
        sections.setdefault(finding.section, []).append(finding)
    shown: set[str] = set()  # each fix is spelled out once
    for section, found in sections.items():
        if section == "serve":
            continue
        lines += ["", section, *(_line(f, shown) for f in found)]
    if report.chosen is not None:
        lines += ["", f"serve --source {report.chosen} will publish"]
        for gpu in report.gpus:
            layout = f"{_count(gpu.instances, 'GPU instance')}, {_count(gpu.compute_instances, 'compute instance')}"
            kind = f"MIG {gpu.mig_mode}, {layout}" if gpu.instances else f"MIG {gpu.mig_mode}"
            lines.append(f"  GPU {gpu.gpu}  {kind}: {_count(sum(gpu.series.values()), 'series', '')}")
            for absent in gpu.absent:
                lines.append(f"         absent {absent.what}: {absent.reason}")
                if absent.fix:
                    lines.append(f"                fix: {_once(absent.fix, shown)}")
    verdict = sections.get("serve", [])
    if verdict:
        lines += ["", "Problems", *(_line(f, shown) for f in verdict)]
    warnings = sum(1 for f in report.findings if f.level is Level.WARN)
    outcome = "ok" if report.ok else "FAIL"
    tail = f" ({warnings} warning{'s' * (warnings != 1)})" if warnings else ""
    what = f"serve --source {report.chosen} works on this node" if report.ok else "see the fail lines above"
    lines += ["", f"result: {outcome}{tail}: {what} (exit {report.exit_code})"]
    return "\n".join(lines)


def _count(n: int, what: str, plural: str = "s") -> str:
    return f"{n} {what}{plural * (n != 1)}"


def _once(fix: str, shown: set[str]) -> str:
    """The fix the first time, a pointer to it afterwards."""
    if fix in shown:
        return "as above"
    shown.add(fix)
    return fix


def _line(finding: Finding, shown: set[str]) -> str:
    text = f"  {finding.level.value:<5} {finding.subject:<18} {finding.message}"
    return f"{text}\n  {'':<5} {'':<18} fix: {_once(finding.fix, shown)}" if finding.fix else text
