"""Choosing a forecaster by a proper score on held-out days, across rolling origins.

Each split trains on every day before its origin and scores the next `test_span` days, which the model did
not see: the quantile loss at the planner's quantile (the proper score of a quantile forecast: lowest for
the forecaster that covers that share of peaks and sits closest above them), beside the under-prediction
rate and the over-provisioning it pays. The forecaster with the lowest mean loss over the splits is chosen;
the days after the last split are left alone, so a choice made here can be reported on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..catalog import FORECASTERS, forecaster
from ..sources import SECONDS_PER_DAY, days
from .backtest import score, walks


@dataclass(frozen=True)
class Split:
    train: tuple[int, int]  # days, inclusive
    test: tuple[int, int]

    def to_dict(self) -> dict:
        return {"train_days": list(self.train), "test_days": list(self.test)}


def rolling_origins(origins: Sequence[int], test_span: int = 2, *, first_train_day: int = 0) -> list[Split]:
    """A split per origin day: train on days first_train_day..origin-1, test on origin..origin+span-1."""
    if not origins:
        raise ValueError("--origins names no day: give origin days separated by commas, e.g. 4,6,8")
    out = []
    for o in sorted(set(origins)):
        if o <= first_train_day:
            raise ValueError(
                f"origin day {o} leaves no day to train on (training starts on day {first_train_day})"
            )
        out.append(Split((first_train_day, o - 1), (o, o + test_span - 1)))
    return out


def score_split(series: np.ndarray, name: str, split: Split, quantile: float, seed: int = 0) -> dict:
    train, test = days(series, *split.train), days(series, *split.test)
    fitted = forecaster(name).fit(train, seed=seed, start_s=split.train[0] * SECONDS_PER_DAY)
    walked = walks(fitted, train, test, quantiles=(quantile,), test_start_s=split.test[0] * SECONDS_PER_DAY)
    result = score(fitted, walked[quantile], quantile).to_dict()
    keep = (
        "quantile_loss",
        "under_prediction_rate",
        "mean_over_provisioning",
        "under_prediction_rate_on_rises",
    )
    return {"model": name, **split.to_dict(), **{k: result[k] for k in keep}, "fit_s": result["fit_s"]}


def select(
    series: np.ndarray,
    splits: Sequence[Split],
    *,
    quantile: float,
    models: Sequence[str] = tuple(FORECASTERS),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Every model on every split; the summary per model, ranked by mean quantile loss."""
    unknown = [m for m in models if m not in FORECASTERS]
    if unknown:
        raise ValueError(f"unknown forecaster(s) {', '.join(unknown)}; choose from {', '.join(FORECASTERS)}")
    for s in splits:  # fail on a split the trace cannot hold before any model is fitted
        days(series, s.train[0], s.test[1])
    rows = []
    for name in models:
        for s in splits:
            if progress:
                progress(f"{name}: train days {s.train[0]}-{s.train[1]}, test days {s.test[0]}-{s.test[1]}")
            rows.append(score_split(series, name, s, quantile, seed))
    summary = summarise(rows, models)
    return {
        "quantile": quantile,
        "splits": [s.to_dict() for s in splits],
        "rows": rows,
        "summary": summary,
        "chosen": summary[0]["model"] if summary else None,
    }


def summarise(rows: list[dict], models: Sequence[str]) -> list[dict]:
    """Per model: mean and worst quantile loss over the splits, its mean rank (1 = best on a split), and
    the mean under-prediction rate and over-provisioning; best mean loss first."""
    splits = sorted({(tuple(r["train_days"]), tuple(r["test_days"])) for r in rows})
    ranks: dict[str, list[float]] = {m: [] for m in models}
    for key in splits:
        here = [r for r in rows if (tuple(r["train_days"]), tuple(r["test_days"])) == key]
        for r in here:  # tied losses share the mean of their ranks
            below = sum(1 for o in here if o["quantile_loss"] < r["quantile_loss"])
            equal = sum(1 for o in here if o["quantile_loss"] == r["quantile_loss"])
            ranks[r["model"]].append(below + (equal + 1) / 2)
    out = []
    for m in models:
        mine = [r for r in rows if r["model"] == m]
        if not mine:
            continue
        loss = np.array([r["quantile_loss"] for r in mine])
        out.append(
            {
                "model": m,
                "splits": len(mine),
                "quantile_loss_mean": round(float(loss.mean()), 5),
                "quantile_loss_worst": round(float(loss.max()), 5),
                "mean_rank": round(float(np.mean(ranks[m])), 2),
                "under_prediction_rate_mean": round(
                    float(np.mean([r["under_prediction_rate"] for r in mine])), 5
                ),
                "mean_over_provisioning_mean": round(
                    float(np.mean([r["mean_over_provisioning"] for r in mine])), 5
                ),
            }
        )
    return sorted(out, key=lambda r: (r["quantile_loss_mean"], r["mean_rank"]))


def markdown(report: dict) -> str:
    """The summary and the held-out report as markdown tables (for docs and MLflow)."""
    splits = ", ".join(
        f"{s['train_days'][0]}-{s['train_days'][1]} -> {s['test_days'][0]}-{s['test_days'][1]}"
        for s in report["splits"]
    )
    lines = [
        f"Quantile loss at q{report['quantile']:g} over {len(report['splits'])} splits (train -> test days: "
        f"{splits}); lower is better.",
        "",
        "| forecaster | loss, mean | loss, worst split | mean rank | under-prediction | over-provisioning |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["summary"]:
        lines.append(
            f"| {r['model']} | {r['quantile_loss_mean']:.5f} | {r['quantile_loss_worst']:.5f} "
            f"| {r['mean_rank']:.2f} "
            f"| {r['under_prediction_rate_mean']:.2%} | {r['mean_over_provisioning_mean']:+.1%} |"
        )
    held = report.get("report") or []
    if held:
        lines += [
            "",
            f"Chosen: {report['chosen']}. On days no split scored:",
            "",
            "| forecaster | trained on | scored on | loss | under-prediction | on rises "
            "| over-provisioning |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in held:
            lines.append(
                f"| {r['model']} | {r['train_days'][0]}-{r['train_days'][1]} "
                f"| {r['test_days'][0]}-{r['test_days'][1]} "
                f"| {r['quantile_loss']:.5f} | {r['under_prediction_rate']:.2%} "
                f"| {r['under_prediction_rate_on_rises']:.0%} | {r['mean_over_provisioning']:+.1%} |"
            )
    return "\n".join(lines) + "\n"
