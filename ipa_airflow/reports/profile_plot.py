"""Latency and throughput against batch size for one profile, as a PNG (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

from ..profiles import Profile


def plot_profile(profile: Profile, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    batches = profile.measured_batches
    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(10, 4))
    for pct, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^-")):
        ax_lat.plot(batches, [profile.latency_ms(b, pct) for b in batches], style, label=pct)
    grid = np.linspace(min(batches), max(batches), 100)
    curve = profile.curve("p99")
    ax_lat.plot(
        grid,
        [curve(b) for b in grid],
        ":",
        color="grey",
        label=f"p99 fit (max err {curve.max_rel_error:.0%})",
    )
    ax_lat.set_xlabel("batch size")
    ax_lat.set_ylabel("latency of one batch (ms)")
    ax_lat.set_xscale("log", base=2)
    ax_lat.legend()
    ax_tp.plot(batches, [profile.throughput_rps(b) for b in batches], "o-", color="tab:green")
    ax_tp.set_xlabel("batch size")
    ax_tp.set_ylabel("throughput of one replica (req/s)")
    ax_tp.set_xscale("log", base=2)
    fig.suptitle(f"{profile.model} on {profile.hardware} ({profile.resources}, {profile.dtype})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
