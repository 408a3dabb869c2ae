"""The forecasters' trade-off curves (under-prediction against over-provisioning) as a PNG."""

from __future__ import annotations

from pathlib import Path


def plot_frontier(
    report: dict, path: str | Path, *, target: tuple[float, float] | None = (0.05, 0.15)
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = report["frontier"]
    under = [u * 100 for u in front["under_rates"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tab20 = plt.get_cmap("tab20")
    ax.set_prop_cycle(color=tab20(range(tab20.N)))  # more forecasters than the default 10 colours
    for name, curve in front["curves"].items():
        ax.plot(under, [c * 100 for c in curve], "o-" if "x constant" in name else "s--", label=name)
    for (name, curve), style in zip(front["oracles"].items(), ("k:", "k-.", "k--"), strict=False):
        ax.plot(under, [c * 100 for c in curve], style, lw=2, label=name)
    for row in report["rows"]:
        if row.get("quantile"):
            ax.plot(
                row["under_prediction_rate"] * 100, row["mean_over_provisioning"] * 100, "x", color="grey"
            )
    if target:
        ax.fill_between(
            [0, target[0] * 100], 0, target[1] * 100, color="tab:green", alpha=0.1, label="target"
        )
    ax.set_xlabel("under-prediction rate (%): next 20-s peak above the forecast")
    ax.set_ylabel("mean over-provisioning (%)")
    ax.set_title(
        f"forecasters on days {report['test_days'][0]}-{report['test_days'][1]} (x: calibrated quantiles)"
    )
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path, dpi=120)


def plot_misses(walk, profile, path: str | Path, *, title: str) -> Path:
    """Where a backtest missed: the hour with the most misses, forecast against true peak, above the
    under-prediction rate by minute of the hour and by hour of the day (forecasting/backtesting/misses.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    t = np.asarray(walk.decision_s, dtype=np.int64)
    missed = walk.missed
    hours = t // 3600
    worst = int(np.bincount(hours - hours.min(), weights=missed.astype(float)).argmax() + hours.min())
    in_hour = hours == worst
    minute = (t[in_hour] % 3600) / 60

    fig = plt.figure(figsize=(10, 7))
    grid = fig.add_gridspec(2, 2, height_ratios=(1.2, 1))
    ax = fig.add_subplot(grid[0, :])
    ax.step(minute, walk.actual[in_hour], where="post", lw=1, color="black", label="true peak of next 20 s")
    ax.step(minute, walk.forecast[in_hour], where="post", lw=1, color="tab:blue", label="forecast")
    hit = missed[in_hour]
    ax.plot(minute[hit], walk.actual[in_hour][hit], "v", color="tab:red", ms=4, label="missed")
    day, hour = divmod(worst, 24)
    ax.set_title(f"{title}: the hour with the most misses (day {day}, {hour:02d}:00)", fontsize=10)
    ax.set_xlabel("minute of the hour")
    ax.set_ylabel("requests / s")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for col, (rates, label) in enumerate(
        ((profile.by_minute_of_hour, "minute of the hour"), (profile.by_hour_of_day, "hour of the day"))
    ):
        ax = fig.add_subplot(grid[1, col])
        ax.bar(np.arange(len(rates)), np.nan_to_num(rates) * 100, width=0.9, color="tab:red")
        ax.axhline(profile.overall * 100, color="black", ls="--", lw=1, label="all decisions")
        ax.set_xlabel(label)
        ax.set_ylabel("under-prediction rate (%)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path, dpi=110)


def _save(fig, path: str | Path, *, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
