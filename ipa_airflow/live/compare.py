"""The simulator beside the real servers: the same window, profiles, forecaster and policy, one row of
figures each, and whether they agree within the targets (p99 within 20 %, violation rate within one
percentage point).

Calibration: what a stage's hop takes on the real servers beyond what the simulator gives it (measured
minus simulated, percentile by percentile of HOP_LEVELS) is the per-batch overhead the profiles leave
out: the router's HTTP exchange, the response's JSON, the host's other work on the replica's core. A
report carries it per stage; a later run (`ipa live run --calibration REPORT.json`, on another window)
simulates with it drawn for every batch, so the calibration is checked on traffic it was not measured
on. It is a distribution, not a constant, because what the profiles miss is mostly in the tail (the
host's other work stalling a replica now and then)."""

from __future__ import annotations

import numpy as np

from ..simulation.results import SimResult

P99_TOLERANCE = 0.20  # |simulated / measured - 1|
VIOLATION_TOLERANCE = 0.01  # absolute, a share of requests
FIELDS = (
    "sla_violation_rate",
    "p99_latency_s",
    "mean_cost",
    "mean_accuracy",
    "planned_over_load",
    "reconfigurations",
    "sent",
)


def side_by_side(simulated: SimResult, measured: SimResult, uncalibrated: SimResult | None = None) -> dict:
    """The two runs' figures; with `uncalibrated` (the same simulation without the calibration), its
    violation rate and p99 too, so what the calibration changed shows."""
    sim, real = simulated.summary(), measured.summary()
    plain = uncalibrated.summary() if uncalibrated is not None else None
    rows = {k: {"simulated": sim[k], "measured": real[k]} for k in FIELDS}
    p99_sim, p99_real = sim["p99_latency_s"], real["p99_latency_s"]
    p99_gap = None if not (p99_sim and p99_real) else round(p99_sim / p99_real - 1, 4)
    viol_gap = round(sim["sla_violation_rate"] - real["sla_violation_rate"], 5)
    return {
        "policy": measured.policy,
        "rows": rows,
        "p99_gap": p99_gap,  # simulated over measured, minus one
        "violation_gap": viol_gap,  # simulated minus measured
        "p99_within_20pct": p99_gap is not None and abs(p99_gap) <= P99_TOLERANCE,
        "violations_within_1pp": abs(viol_gap) <= VIOLATION_TOLERANCE,
        "measured_wall_s": round(measured.wall_s, 1),
        "stage_latency_ms": {"simulated": simulated.stage_latency_ms, "measured": measured.stage_latency_ms},
        "overhead_ms": overhead_ms(simulated, measured),
        **(
            {"uncalibrated": {k: plain[k] for k in ("sla_violation_rate", "p99_latency_s", "mean_cost")}}
            if plain is not None
            else {}
        ),
    }


def overhead_ms(simulated: SimResult, measured: SimResult) -> dict[str, list[float]]:
    """Per stage, at each of HOP_LEVELS: how much longer its hop is on the real servers than in the
    simulation (never negative, and not decreasing from one level to the next: a distribution)."""
    sim, real = simulated.stage_latency_ms, measured.stage_latency_ms
    out = {}
    for k in real:
        if k in sim:
            gap = np.maximum(np.asarray(real[k]["levels_ms"]) - np.asarray(sim[k]["levels_ms"]), 0.0)
            out[k] = [round(float(x), 2) for x in np.maximum.accumulate(gap)]
    return out


def calibration(rows: list[dict]) -> dict[str, list[float]]:
    """The per-stage overhead distribution over every policy's run (their mean at each level), in ms."""
    stages: dict[str, list[list[float]]] = {}
    for row in rows:
        for k, v in row.get("overhead_ms", {}).items():
            stages.setdefault(k, []).append(v)
    return {k: [round(float(x), 2) for x in np.mean(np.asarray(v, float), axis=0)] for k, v in stages.items()}


def markdown(report: dict) -> str:
    """The report as a table; with a calibration, the uncalibrated simulation's violations and p99 too."""
    calibrated = any("uncalibrated" in c for c in report["policies"])
    head = "| policy | violations sim / real | p99 s sim / real | mean cost sim / real | accuracy sim / real "
    head += "| reconfigs sim / real | p99 within 20 % | violations within 1 pp |"
    head += " uncalibrated sim: violations, p99 s |" if calibrated else ""
    lines = [head, "|---" * (9 if calibrated else 8) + "|"]
    for c in report["policies"]:
        r = c["rows"]
        cells = [_pair(r, k, fmt) for k, fmt in METRIC_FORMATS]
        agree = ["yes" if c[k] else "no" for k in ("p99_within_20pct", "violations_within_1pp")]
        if calibrated:
            u = c.get("uncalibrated") or {}
            p99 = u.get("p99_latency_s")
            agree.append(
                f"{u.get('sla_violation_rate', 0):.2%}, {'-' if p99 is None else format(p99, '.3f')}"
            )
        lines.append("| " + " | ".join([c["policy"], *cells, *agree]) + " |")
    return "\n".join(lines)


METRIC_FORMATS = (
    ("sla_violation_rate", ".2%"),
    ("p99_latency_s", ".3f"),
    ("mean_cost", ".2f"),
    ("mean_accuracy", ".4f"),
    ("reconfigurations", "d"),
)


def _pair(rows: dict, key: str, fmt: str) -> str:
    return " / ".join(
        "-" if v is None else format(v, fmt) for v in (rows[key]["simulated"], rows[key]["measured"])
    )
