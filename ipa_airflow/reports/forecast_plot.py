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
    for name, curve in front["curves"].items():
        ax.plot(under, [c * 100 for c in curve], "o-" if "x constant" in name else "s--", label=name)
    for (name, curve), style in zip(front["oracles"].items(), ("k:", "k-."), strict=False):
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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
