"""Agreement between two sets of profiles: per (model, dtype, resources, batch), the ratio of p50s."""

from __future__ import annotations

import statistics
from typing import Any

from ..profiles import ProfileSet


def compare(ours: ProfileSet, reference: ProfileSet) -> dict[str, Any]:
    """Match profiles by (model, dtype, resources), ignoring the hardware name, and compare p50 per batch."""
    ref_by = {(p.model, p.dtype, p.resources): p for p in reference}
    rows: list[dict[str, Any]] = []
    for p in ours:
        r = ref_by.get((p.model, p.dtype, p.resources))
        if r is None:
            continue
        for b in p.measured_batches:
            if b in r.measured_batches:
                ours_ms, ref_ms = p.latency_ms(b, "p50"), r.latency_ms(b, "p50")
                rows.append(
                    {
                        "model": p.model,
                        "dtype": p.dtype,
                        "resources": p.resources,
                        "batch": b,
                        "p50_ms": round(ours_ms, 3),
                        "reference_p50_ms": round(ref_ms, 3),
                        "ratio": round(ours_ms / ref_ms, 3),
                    }
                )
    ratios = [r["ratio"] for r in rows]
    return {
        "rows": rows,
        "matched_cells": len(rows),
        "median_ratio": round(statistics.median(ratios), 3) if ratios else None,
        "min_ratio": min(ratios, default=None),
        "max_ratio": max(ratios, default=None),
    }
