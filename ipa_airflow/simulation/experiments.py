"""Running cases (pipeline x window x policy) and the evaluation matrix with its report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ValidationError

from ..forecasting.catalog import DEFAULT_FORECASTER
from ..forecasting.catalog import forecaster as make_forecaster
from ..forecasting.sources import SECONDS_PER_DAY
from ..pipelines import load_pipeline
from ..spec import Adaptation, Limits, PipelineSpec
from .controllers import SIMULATED_POLICIES, make_policy
from .patterns import Pattern, find_patterns
from .report import markdown, paper_comparison, plot_pipeline, targets
from .results import SimResult
from .simulator import Simulator

POLICIES = SIMULATED_POLICIES
HISTORY_S = 6 * 3600
TRAIN_DAYS = (0, 9)  # the forecaster never sees the evaluation days (10-13)


def check_cases(spec_paths: list[str], policies) -> None:
    """Fail on a bad spec or an unknown policy now, before the forecaster is fitted and any case runs."""
    for name in policies:
        if name not in POLICIES:
            raise ValueError(f"unknown policy '{name}'; choose from {', '.join(POLICIES)}")
    for spec_path in spec_paths:
        load_pipeline(spec_path)


def trains_on(trace: np.ndarray, start_s: int) -> bool:
    """Whether a window starting at `start_s` lies in the days fit_forecaster trains on."""
    return start_s < min(len(trace), (TRAIN_DAYS[1] + 1) * SECONDS_PER_DAY)


def fit_forecaster(
    trace: np.ndarray, model: str = DEFAULT_FORECASTER, seed: int = 0, days: tuple[int, int] = TRAIN_DAYS
):
    # The days the trace holds of those asked for: a window in a short trace still gets a forecaster
    # (`ipa simulate --start` says when it trained on the window's own days).
    return make_forecaster(model).fit(
        trace[days[0] * SECONDS_PER_DAY : (days[1] + 1) * SECONDS_PER_DAY],
        seed=seed,
        start_s=days[0] * SECONDS_PER_DAY,
    )


def test_patterns(trace: np.ndarray) -> dict[str, Pattern]:
    """The paper's patterns, searched in the days the forecaster was not trained on."""
    offset = (TRAIN_DAYS[1] + 1) * SECONDS_PER_DAY
    if len(trace) < offset + SECONDS_PER_DAY:
        raise ValueError(
            f"the patterns are searched in the days after the {TRAIN_DAYS[1] + 1} days the forecaster trains "
            f"on, so they need a trace of {TRAIN_DAYS[1] + 2} days or more; this one has "
            f"{len(trace) / SECONDS_PER_DAY:.1f} (`ipa simulate SPEC --start SECOND` runs a window of it)"
        )
    found = find_patterns(trace[offset:])
    return {
        k: Pattern(p.name, tuple((s + offset, d) for s, d in p.pieces), p.mean_rps, p.min_rps, p.max_rps)
        for k, p in found.items()
    }


def run_case(
    spec_path: str,
    trace: np.ndarray,
    pieces,
    policy: str,
    *,
    fitted,
    seed: int = 0,
    overrides: dict | None = None,
) -> SimResult:
    """One pipeline, window and policy. `overrides` replaces fields of the spec's adaptation or limits
    sections (e.g. {"quantile": 0.95, "interval_s": 60, "latency_headroom": 0.2})."""
    pipeline = load_pipeline(spec_path)
    spec = with_overrides(pipeline.spec, overrides)
    counts = np.concatenate([trace[s : s + d] for s, d in pieces])
    start = pieces[0][0]
    history = trace[max(0, start - HISTORY_S) : start]
    pol = make_policy(policy, spec, pipeline.profiles, fitted, start_s=start)
    sim = Simulator(spec, pipeline.profiles, counts, pol, history=history, seed=seed, source=pipeline.source)
    return sim.run()


# The spec sections a run may override (they share no field name, so a field names its section).
OVERRIDABLE: dict[str, type[BaseModel]] = {"adaptation": Adaptation, "limits": Limits}


def spec_value(spec: PipelineSpec, field: str):
    """The spec's own value of an overridable field (None for a field of no overridable section)."""
    for section, model in OVERRIDABLE.items():
        if field in model.model_fields:
            return getattr(getattr(spec, section), field)
    return None


def with_overrides(spec: PipelineSpec, overrides: dict | None) -> PipelineSpec:
    """The spec with some settings of its adaptation and limits sections replaced, validated as the
    spec's own would be."""
    if not overrides:
        return spec
    unknown = set(overrides) - {f for model in OVERRIDABLE.values() for f in model.model_fields}
    if unknown:
        raise ValueError(f"cannot override {', '.join(sorted(unknown))}: not a field of adaptation or limits")
    merged = spec.model_dump()
    for section, model in OVERRIDABLE.items():
        merged[section] = {
            **merged[section],
            **{k: v for k, v in overrides.items() if k in model.model_fields},
        }
    # The whole spec, so its cross-checks (e.g. max_batch against batch_sizes) see the new values too.
    try:
        return PipelineSpec.model_validate(merged)
    except ValidationError as exc:
        said = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(said.replace("Value error, ", "")) from None


def plot_case(results: dict[str, SimResult], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(13, 10), sharex=True)
    any_r = next(iter(results.values()))
    t = np.arange(any_r.seconds)
    axes[0].plot(t, any_r.per_second["load"], color="0.75", lw=2, label="load (req/s)", zorder=0)
    # A colour and a dash per policy: policies that plan alike draw on top of each other, and a solid
    # line alone would hide the one beneath.
    dashes = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]
    for k, (name, r) in enumerate(results.items()):
        style = {"color": f"C{k % 10}", "ls": dashes[k % len(dashes)], "lw": 1.2, "alpha": 0.9}
        axes[0].plot(t, r.per_second["planned"], label=name, **style)
        axes[1].plot(t, r.per_second["accuracy"], **style)
        axes[2].plot(t, r.per_second["cost"], **style)
        axes[3].plot(t, np.minimum(r.per_second["p99_s"], 5 * r.sla_s), **style)
    axes[3].axhline(any_r.sla_s, color="red", ls="--", lw=1, label="SLA")
    for ax, label in zip(
        axes, ("planned for (req/s)", "accuracy (PAS)", "cost", "p99 latency (s)"), strict=True
    ):
        ax.set_ylabel(label)
    # One legend, beside the plots: inside, it covered the load curve.
    handles, labels = axes[0].get_legend_handles_labels()
    h3, l3 = axes[3].get_legend_handles_labels()
    fig.legend(handles + h3, labels + l3, loc="upper left", bbox_to_anchor=(0.86, 0.97), fontsize=8)
    axes[3].set_xlabel("second of the window")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def evaluate(
    spec_paths: list[str],
    trace: np.ndarray,
    out: Path,
    *,
    patterns=None,
    policies=POLICIES,
    seed: int = 0,
    fitted=None,
    progress=None,
    overrides: dict | None = None,
    random_windows: int = 0,
    model: str = DEFAULT_FORECASTER,
) -> dict:
    check_cases(spec_paths, policies)
    found = test_patterns(trace)
    out.mkdir(parents=True, exist_ok=True)
    if progress and fitted is None:
        progress(f"fitting the {model} forecaster on days {TRAIN_DAYS[0]}-{TRAIN_DAYS[1]} of the trace")
    t0 = time.perf_counter()
    fitted = fitted or fit_forecaster(trace, model=model, seed=seed)
    fit_s = time.perf_counter() - t0
    rows = []
    for spec_path in spec_paths:
        spec = with_overrides(load_pipeline(spec_path).spec, overrides)
        name, q = spec.name, spec.adaptation.quantile
        floor = minimum_cost(spec)
        for pattern in patterns or found:
            p = found[pattern]
            results = {}
            for policy in policies:
                if progress:
                    progress(f"{name} / {pattern} / {policy}")
                r = run_case(
                    spec_path, trace, p.pieces, policy, fitted=fitted, seed=seed, overrides=overrides
                )
                results[policy] = r
                rows.append(
                    {
                        "pipeline": name,
                        "pattern": pattern,
                        "quantile": q,
                        "interval_s": spec.adaptation.interval_s,
                        "latency_headroom": spec.limits.latency_headroom,
                        "min_cost": floor,
                        **r.summary(),
                    }
                )
            plot_case(results, f"{name}, {pattern} window", out / f"{name}_{pattern}.png")
    robustness = []
    if random_windows:
        windows = random_test_windows(trace, random_windows, seed=seed)
        for spec_path in spec_paths:
            if progress:
                progress(f"{load_pipeline(spec_path).spec.name} / {random_windows} random windows")
            robustness += window_summary(spec_path, trace, windows, policies, fitted, seed, overrides)
    for name in dict.fromkeys(r["pipeline"] for r in rows):
        plot_pipeline(rows, name, out / f"{name}.png")
    report = {
        "forecaster": fitted.name,
        "forecaster_fit_s": round(fit_s, 2),
        "overrides": overrides or {},
        "seed": seed,
        "patterns": {k: v.to_dict() for k, v in found.items()},
        "rows": rows,
        "targets": targets(rows),
        "paper_comparison": paper_comparison(rows),
        "random_windows": robustness,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpus": os.cpu_count(),
    }
    (out / "evaluation.json").write_text(json.dumps(report, indent=1))
    (out / "evaluation.md").write_text(markdown(report))
    return report


def random_test_windows(
    trace: np.ndarray, n: int, *, seed: int = 0, window_s: int = 1200, days: tuple[int, int] | None = None
) -> list[int]:
    """`n` window starts drawn at random from the test days (or `days`, inclusive), none across an
    outage (a 10-s bin of zeros), so one hand-picked burst does not decide how a policy looks."""
    rng = np.random.default_rng(seed)
    lo = (TRAIN_DAYS[1] + 1 if days is None else days[0]) * SECONDS_PER_DAY
    hi = len(trace) if days is None else min(len(trace), (days[1] + 1) * SECONDS_PER_DAY)
    if hi - window_s <= lo:
        raise ValueError(f"days {days} of a {len(trace)}-s trace hold no {window_s}-s window")
    starts: list[int] = []
    for _ in range(100 * n):
        if len(starts) == n:
            break
        s = int(rng.integers(lo, hi - window_s))
        if trace[s : s + window_s].reshape(-1, 10).mean(axis=1).min() > 0:
            starts.append(s)
    return sorted(starts)


def window_summary(spec_path, trace, starts, policies, fitted, seed, overrides) -> list[dict]:
    """Per policy over many windows: mean and worst violation rate, windows over 1 %, mean accuracy and
    cost, and cost as a share of fa2-high's in the same window."""
    per = {
        p: [
            run_case(
                spec_path, trace, ((s, 1200),), p, fitted=fitted, seed=seed, overrides=overrides
            ).summary()
            for s in starts
        ]
        for p in policies
    }
    name = load_pipeline(spec_path).spec.name
    out = []
    for p, runs in per.items():
        v = np.array([r["sla_violation_rate"] for r in runs])
        row = {
            "pipeline": name,
            "policy": p,
            "windows": len(runs),
            "violations_mean": round(float(v.mean()), 5),
            "violations_max": round(float(v.max()), 5),
            "windows_over_1pct": int((v >= 0.01).sum()),
            "accuracy_mean": round(float(np.mean([r["mean_accuracy"] for r in runs])), 5),
            "cost_mean": round(float(np.mean([r["mean_cost"] for r in runs])), 4),
            "planned_over_load_mean": round(float(np.mean([r["planned_over_load"] for r in runs])), 4),
            "carried_over_load_mean": round(float(np.mean([r["carried_over_load"] for r in runs])), 4),
            "peak_over_load_mean": round(float(np.mean([r["peak_over_load"] for r in runs])), 4),
        }
        if "fa2-high" in per:
            share = [r["mean_cost"] / h["mean_cost"] for r, h in zip(runs, per["fa2-high"], strict=True)]
            row["cost_share_of_fa2_high_mean"] = round(float(np.mean(share)), 3)
        out.append(row)
    return out


def minimum_cost(spec) -> float:
    """What the pipeline costs at the least: one replica of its cheapest shape per stage."""
    return sum(
        min(spec.replica_cost(sh.resources) for v in st.variants for sh in v.shapes) for st in spec.stages
    )
