"""The cost-against-violations trade-off of ipa's provisioning settings, over random windows.

Each setting of the grid (fields of the spec's adaptation and limits sections, e.g. quantile and
stabilisation) is replayed under `ipa` on the same windows, beside the baselines, so a user sees what each
point costs and picks the one they want. The forecaster trains on `train_days`; the windows are drawn from
`window_days`, after them. Choosing a setting on one pair of day ranges and reporting it on another keeps the
choice honest (`choose`).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from ..pipelines import load_pipeline
from . import experiments as ev

BASELINES = ("fa2-low", "fa2-high", "hpa")
TARGET_VIOLATIONS = 0.01


def parse_grid(text: str) -> list[dict]:
    """'quantile=0.9,0.99;stabilisation=1,4' -> every combination, as override dicts."""
    axes: dict[str, list] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, eq, values = part.partition("=")
        if not eq or not values.strip():
            raise ValueError(f"--grid: '{part}' is not NAME=V1,V2 (e.g. quantile=0.95,0.99)")
        if name.strip() in axes:
            raise ValueError(f"--grid names {name.strip()} twice; give its values once, separated by commas")
        axes[name.strip()] = list(dict.fromkeys(_number(v.strip()) for v in values.split(",") if v.strip()))
    if not axes:
        raise ValueError("--grid names no setting (e.g. quantile=0.95,0.99;stabilisation=1,4)")
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def _number(v: str) -> float | int:
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"--grid: '{v}' is not a number") from None


def label(setting: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in setting.items())


_SHORT = {
    "quantile": "q",
    "stabilisation": "s",
    "max_utilisation": "u",
    "interval_s": "i",
    "min_gain": "g",
    "burst_window_s": "b",
}


def short(text: str) -> str:
    """'quantile=0.95 stabilisation=1' -> 'q0.95 s1': labels that fit beside a point."""
    out = []
    for part in text.split():
        k, _, v = part.partition("=")
        out.append(f"{_SHORT.get(k, k)}{v}" if v else part)
    return " ".join(out)


def sweep(
    spec_paths: list[str],
    trace: np.ndarray,
    grid: list[dict],
    *,
    train_days: tuple[int, int],
    window_days: tuple[int, int],
    windows: int,
    out: Path,
    model: str = ev.DEFAULT_FORECASTER,
    seed: int = 0,
    baselines=BASELINES,
    progress=None,
) -> dict:
    if window_days[0] <= train_days[1]:
        raise ValueError(
            f"the windows (days {window_days[0]}-{window_days[1]}) must come after the days the forecaster "
            f"trains on ({train_days[0]}-{train_days[1]})"
        )
    ev.check_cases(spec_paths, ["ipa", *baselines])
    specs = {path: load_pipeline(path).spec for path in spec_paths}
    for spec in specs.values():  # a bad field or value fails now, not after an hour of replay
        for setting in grid:
            try:
                ev.with_overrides(spec, setting)
            except ValueError as exc:
                raise ValueError(f"--grid {label(setting)}: {exc}") from None
    starts = ev.random_test_windows(trace, windows, seed=seed, days=window_days)
    t0 = time.perf_counter()
    if progress:
        progress(f"fitting the {model} forecaster on days {train_days[0]}-{train_days[1]}")
    fitted = ev.fit_forecaster(trace, model=model, seed=seed, days=train_days)
    rows = []
    for spec_path, spec in specs.items():
        if progress:
            progress(f"{spec.name}: baselines over {len(starts)} windows")
        base = ev.window_summary(spec_path, trace, starts, list(baselines), fitted, seed, None)
        rows += [{**r, "setting": r["policy"], "kind": "baseline"} for r in base]
        for setting in grid:
            if progress:
                progress(f"{spec.name}: ipa {label(setting)}")
            [r] = ev.window_summary(spec_path, trace, starts, ["ipa"], fitted, seed, setting)
            rows.append({**r, "setting": label(setting), "overrides": setting, "kind": "ipa"})
        # Which point is the shipped one: the spec's own values of the swept fields.
        shipped = label({k: ev.spec_value(spec, k) for k in grid[0]})
        rows.append({"pipeline": spec.name, "kind": "spec", "setting": shipped})
    report = {
        "forecaster": fitted.name,
        "train_days": list(train_days),
        "window_days": list(window_days),
        "windows": starts,
        "grid": grid,
        "seed": seed,
        "rows": rows,
        "chosen": choose(rows),
        "per_pipeline": choose_per_pipeline(rows),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(report, indent=1))
    report["plot"] = str(plot(report, out / "sweep.png"))
    return report


def choose(rows: list[dict], target: float = TARGET_VIOLATIONS) -> dict | None:
    """The setting to ship: of those whose mean violation rate is under `target` on every pipeline, the one
    whose replicas held the least capacity over the load (lowest carried / load, averaged over the
    pipelines)."""
    ipa = [r for r in rows if r["kind"] == "ipa"]
    pipelines = {r["pipeline"] for r in ipa}
    by: dict[str, list[dict]] = {}
    for r in ipa:
        by.setdefault(r["setting"], []).append(r)
    ok = {
        k: v
        for k, v in by.items()
        if {r["pipeline"] for r in v} == pipelines and all(r["violations_mean"] < target for r in v)
    }
    if not ok:
        return None
    # The capacity the replicas held, not the load decisions named: holds and fast-path replicas count.
    best = min(ok, key=lambda k: float(np.mean([r["carried_over_load_mean"] for r in ok[k]])))
    return {
        "setting": best,
        "overrides": ok[best][0]["overrides"],
        "planned_over_load_mean": round(float(np.mean([r["planned_over_load_mean"] for r in ok[best]])), 4),
        "carried_over_load_mean": round(float(np.mean([r["carried_over_load_mean"] for r in ok[best]])), 4),
        "violations_mean_worst_pipeline": max(r["violations_mean"] for r in ok[best]),
    }


def choose_per_pipeline(rows: list[dict], target: float = TARGET_VIOLATIONS) -> dict[str, dict]:
    """Per pipeline, the quantile its SLA target needs, measured: of the ipa settings that kept every
    window's violation rate under `target`, the one whose replicas held the least capacity over the load.
    A pipeline no setting kept under it in every window is left out (say so, do not guess)."""
    out: dict[str, dict] = {}
    for r in rows:
        if r["kind"] != "ipa" or r["violations_max"] >= target:
            continue
        best = out.get(r["pipeline"])
        if best is None or r["carried_over_load_mean"] < best["carried_over_load_mean"]:
            out[r["pipeline"]] = {
                k: r[k]
                for k in (
                    "setting",
                    "overrides",
                    "carried_over_load_mean",
                    "planned_over_load_mean",
                    "cost_mean",
                )
            }
    return out


def plot(report: dict, path: Path) -> Path:
    """Per pipeline: cost against mean violation rate, a point per ipa setting and per baseline; the
    spec's own setting ringed in black, the chosen one in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = report["rows"]
    names = list(dict.fromkeys(r["pipeline"] for r in rows))
    cols = min(3, len(names))
    fig, axes = plt.subplots(
        (len(names) + cols - 1) // cols, cols, figsize=(5.2 * cols, 4 * ((len(names) + cols - 1) // cols))
    )
    axes = np.atleast_1d(axes).ravel()
    chosen = (report.get("chosen") or {}).get("setting")
    for ax, name in zip(axes, names, strict=False):
        mine = [r for r in rows if r["pipeline"] == name]
        ax.set_yscale("log")  # fa2-high often costs several times the rest
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        shipped = next((r["setting"] for r in mine if r["kind"] == "spec"), None)
        for r in mine:
            if r["kind"] == "spec":
                continue
            x, y = 100 * r["violations_mean"], r["cost_mean"]
            if r["kind"] == "baseline":
                ax.scatter(x, y, marker="s", color="0.5")
                ax.annotate(
                    r["setting"], (x, y), fontsize=7, color="0.4", xytext=(3, 3), textcoords="offset pixels"
                )
                continue
            ax.scatter(x, y, color="C0")
            k = sum(1 for q in mine if q["kind"] == "ipa" and q is not r and mine.index(q) < mine.index(r))
            ax.annotate(
                short(r["setting"]),
                (x, y),
                fontsize=7,
                xytext=(4, -10 + 9 * (k % 3)),
                textcoords="offset points",
            )
            if r["setting"] == shipped:
                ax.scatter(x, y, s=160, facecolors="none", edgecolors="black")
            if r["setting"] == chosen:
                ax.scatter(x, y, s=260, facecolors="none", edgecolors="red")
        ax.axvline(100 * TARGET_VIOLATIONS, color="red", ls="--", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("SLA violations, mean over windows (%)")
        ax.set_ylabel("cost (mean)")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"ipa settings over {len(report['windows'])} windows of days {report['window_days'][0]}-"
        f"{report['window_days'][1]}\nblack ring: the spec's; red: chosen; squares: baselines",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown(report: dict) -> str:
    lines = [
        f"Forecaster {report['forecaster']} trained on days "
        f"{report['train_days'][0]}-{report['train_days'][1]}; "
        f"{len(report['windows'])} random 20-minute windows of days {report['window_days'][0]}-"
        f"{report['window_days'][1]}; seed {report['seed']}.",
        "",
        "| pipeline | setting | violations mean | worst | windows >= 1 % | cost | accuracy (PAS) "
        "| planned / load | carried / load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if r["kind"] == "spec":
            continue
        lines.append(
            f"| {r['pipeline']} | {r['setting']} | {r['violations_mean']:.2%} | {r['violations_max']:.2%} "
            f"| {r['windows_over_1pct']} | {r['cost_mean']:.2f} | {r['accuracy_mean']:.4f} "
            f"| {r['planned_over_load_mean']:.2f} | {r['carried_over_load_mean']:.2f} |"
        )
    c = report.get("chosen")
    lines += [
        "",
        f"Chosen: {c['setting']} (carried / load {c['carried_over_load_mean']:.2f}, planned / load "
        f"{c['planned_over_load_mean']:.2f}, averaged over the pipelines; "
        f"worst pipeline's mean violations {c['violations_mean_worst_pipeline']:.2%})"
        if c
        else f"No setting kept every pipeline's mean violations under {TARGET_VIOLATIONS:.0%}.",
    ]
    per = report.get("per_pipeline") or {}
    if per:
        lines += [
            "",
            f"Per pipeline, the leanest setting with no window at {TARGET_VIOLATIONS:.0%} violations or "
            "more:",
            "",
            "| pipeline | setting | carried / load | planned / load | cost |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {c['setting']} | {c['carried_over_load_mean']:.2f} "
            f"| {c['planned_over_load_mean']:.2f} | {c['cost_mean']:.2f} |"
            for name, c in per.items()
        ]
    return "\n".join(lines) + "\n"
