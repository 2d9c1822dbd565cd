"""The review as JSON for automation (keys as documented in README's "Capacity review")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from exporter.report.review import InstanceResult, NodePlan, Review
from exporter.report.stats import label_number
from exporter.timespec import format_duration


def _index(text: str) -> int | str:
    return label_number(text, text)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _instance(inst: InstanceResult) -> dict[str, Any]:
    s = inst.summary
    rec = inst.recommendation
    return {
        "node": inst.key.node,
        "gpu": _index(inst.key.gpu),
        "gi": _index(inst.key.gi),
        "profile": inst.key.profile,
        "mean_gr_engine_active": s.mean if s else None,
        "p95_gr_engine_active": s.p95 if s else None,
        "max_memory_used_bytes": s.memory_max_bytes if s else None,
        "idle_fraction": s.idle_fraction if s else None,
        "energy_kwh_estimate": s.energy_kwh if s else None,
        "recommendation": {
            "action": rec.action,
            "profile": rec.profile if rec.action != "reclaim" else None,
            "constraint": rec.constraint,
            "reason": rec.reason,
        },
    }


def _layout(plan: NodePlan) -> dict[str, Any]:
    return {
        "node": plan.node,
        "board": plan.board.key,
        "gpus_today": [_index(g) for g in plan.gpus_today],
        "gpus": [
            {
                "gpu": index,
                "placements": [
                    {
                        "profile": p.profile.name,
                        "start": p.start,
                        "from": {"gpu": _index(i.key.gpu), "gi": _index(i.key.gi), "profile": i.key.profile},
                    }
                    for p, i in gpu
                ],
            }
            for index, gpu in enumerate(plan.recommended)
        ],
        "mig_parted": plan.mig_parted,
    }


def _source(review: Review) -> dict[str, Any] | None:
    source = review.provenance
    if source is None:
        return None
    return {
        "url": source.url,
        "rollup_days": source.rollup_days,
        "days": source.days,
        "series": source.rollup_note,
        "retention": source.retention.value,
        "retention_unknown_because": source.retention.unknown_because or None,
        "requests": source.requests,
        "bytes_received": source.bytes,
        "values_received": source.values,
    }


def review_document(review: Review) -> dict[str, Any]:
    g = review.grid
    return {
        "window": {
            "start": _iso(g.start),
            "end": _iso(g.end),
            "duration": format_duration(g.end - g.start),
            "step": format_duration(g.step),
        },
        "instances": [_instance(i) for i in review.instances],
        "source": _source(review),
        "gpus_today": review.gpus_today,
        "gpus_recommended": review.gpus_recommended,
        "energy": {"kwh_estimate": review.energy_kwh, "idle_share": review.idle_energy_share},
        "layouts": [_layout(n) for n in review.nodes],
    }


def render_json(review: Review) -> str:
    return json.dumps(review_document(review), indent=2) + "\n"
