"""The review's tables as plain strings, shared by the Markdown and HTML renderers."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.report.review import InstanceResult, NodePlan, Review
from exporter.report.rightsize import ACTIONS
from exporter.timespec import format_duration, format_time
from exporter.units import gib, percent


@dataclass(frozen=True, slots=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def window_line(review: Review) -> str:
    g = review.grid
    p = review.policy
    return (
        f"Prometheus {review.url}, window {format_duration(g.end - g.start)} "
        f"({format_time(g.start)} to {format_time(g.end)}), step {format_duration(g.step)}. "
        f"Idle below {percent(p.idle_threshold)} activity; headroom {percent(p.compute_headroom)} on compute, "
        f"{percent(p.memory_headroom)} on memory."
    )


def source_line(review: Review) -> str:
    """Where the figures come from, what the server sent, and whether the retention was checked."""
    source = review.provenance
    if source is None:
        return ""
    retention = (
        f"Retention {source.retention.value}."
        if source.retention.value
        else f"Retention not checked: {source.retention.unknown_because}; the window was checked against the data."
    )
    size = f"{source.bytes / 1e6:.1f} MB" if source.bytes >= 1e6 else f"{source.bytes / 1e3:.0f} kB"
    return (
        f"Read from {source.rollup_note}: {source.values:,} values ({size}) in {source.requests:,} queries. {retention}"
    )


def summary_table(review: Review) -> Table:
    today, after = review.gpus_today, review.gpus_recommended
    c0, c1 = review.compute_slices_today, review.compute_slices_recommended
    m0, m1 = review.memory_slices_today, review.memory_slices_recommended
    rows = [
        ("MIG GPUs", str(today), str(after), f"{today - after} freed"),
        ("compute slices in instances", str(c0), str(c1), f"{c0 - c1} reclaimed"),
        ("memory slices in instances", str(m0), str(m1), f"{m0 - m1} reclaimed"),
    ]
    for fleet in review.fleet:
        if sum(1 for n in review.nodes if n.board == fleet.board) > 1:
            rows.append(
                (
                    f"{fleet.board.title} GPUs if workloads may move between nodes",
                    str(fleet.gpus_today),
                    str(fleet.gpus_fleet_wide),
                    f"{fleet.gpus_today - fleet.gpus_fleet_wide} freed",
                )
            )
    return Table(("", "today", "recommended", "change"), tuple(rows))


def action_counts(review: Review) -> str:
    counts = dict.fromkeys(ACTIONS, 0)
    for inst in review.instances:
        counts[inst.recommendation.action] += 1
    return f"{len(review.instances)} GPU instances: " + ", ".join(f"{counts[a]} {a}" for a in ACTIONS) + "."


def energy_line(review: Review) -> str:
    """The estimated energy over the window and the share idle instances spent (README: Energy per slice)."""
    total, idle = review.energy_kwh, review.idle_energy_share
    if total is None:
        return (
            "Energy: not estimated (the energy recording rule instance_gpu_gi:mig_instance_power_watts:estimate "
            "is not recorded by this server; load deploy/prometheus's rules)."
        )
    spent = f", {percent(idle, 1)} of it by idle instances" if idle is not None else ""
    return (
        f"Estimated energy: {kwh(total)} over the window{spent}. An estimate: each GPU's power shared among "
        "its GPU instances (idle power by slices held, the rest by slice-weighted activity)."
    )


def kwh(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f} kWh" if value < 1000 else f"{value / 1000:,.2f} MWh"


def _pods(inst: InstanceResult) -> str:
    if not inst.pods:
        return "-"
    shown = ", ".join(inst.pods[:3])
    return shown + (f" +{len(inst.pods) - 3}" if len(inst.pods) > 3 else "")


def instance_table(review: Review) -> Table:
    header = (
        "node",
        "gpu",
        "gi",
        "profile",
        "pods",
        "mean",
        "p95",
        "max",
        "idle",
        "mem mean",
        "mem max",
        "energy (est.)",
        "action",
        "to",
        "why",
    )
    rows = []
    for inst in review.instances:
        s = inst.summary
        rec = inst.recommendation
        rows.append(
            (
                inst.key.node,
                inst.key.gpu,
                inst.key.gi,
                inst.key.profile,
                _pods(inst),
                percent(s.mean if s else None, 1),
                percent(s.p95 if s else None, 1),
                percent(s.max if s else None, 1),
                percent(s.idle_fraction if s else None, 1),
                gib(s.memory_mean_bytes if s else None),
                gib(s.memory_max_bytes if s else None),
                kwh(s.energy_kwh if s else None),
                rec.action,
                rec.profile if rec.action == "resize" and rec.profile else "",
                rec.reason,
            )
        )
    return Table(header, tuple(rows))


def layout_table(plan: NodePlan) -> Table:
    rows = []
    for index, gpu in enumerate(plan.recommended):
        layout = " + ".join(f"{p.profile.name}@{p.start}" for p, _ in gpu)
        hosted = ", ".join(f"GPU {i.key.gpu} gi {i.key.gi} ({i.key.profile})" for _, i in gpu)
        rows.append((str(index), layout, hosted))
    return Table(("GPU", "layout (profile@memory slice)", "hosts today's"), tuple(rows))


def node_heading(plan: NodePlan) -> str:
    return (
        f"{plan.node}: {len(plan.gpus_today)} x {plan.board.title} today, "
        f"{len(plan.recommended)} recommended ({len(plan.gpus_today) - len(plan.recommended)} freed)"
    )


def notes(review: Review) -> list[str]:
    """GPUs left out of the packing and instances that disappeared during the window."""
    return list(review.unplanned_gpus) + [
        f"{k.node} GPU {k.gpu} gi {k.gi} ({k.profile}) disappeared during the window (re-partitioned)"
        for k in review.gone
    ]
