"""What `ipa simulate` runs besides the evaluation matrix: the window of a trace it replays (a pattern
or a start and a duration, checked against the trace), and one pipeline replayed there under each
policy. The cases themselves run in experiments.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..forecasting.sources import SECONDS_PER_DAY
from . import experiments as ev
from .results import SimResult

Pieces = tuple[tuple[int, int], ...]  # (first second, seconds) of the trace, replayed one after another


def spec_paths(pipelines: str) -> list[str]:
    """The specs of `--pipelines`: a folder's *.yaml, or spec files, separated by commas."""
    specs = [
        str(s)
        for part in pipelines.split(",")
        for s in (sorted(Path(part).glob("*.yaml")) if Path(part).is_dir() else [Path(part)])
    ]
    if not specs:
        raise ValueError(f"--pipelines {pipelines}: no pipeline spec (*.yaml) there")
    return specs


def check_window(trace: np.ndarray, start: int, duration: int, path) -> None:
    """A window must lie in the trace (else the simulator replays nothing and reports a perfect run), and
    the trace must hold a day for the forecaster, which trains on its first days."""
    n = len(trace)
    if start + duration > n:
        latest = f"--start {n - duration} at the latest" if duration <= n else "a shorter --duration"
        raise ValueError(
            f"the window --start {start} --duration {duration} ends at second {start + duration}, after the "
            f"end of trace {path} ({n} s, {n / SECONDS_PER_DAY:.2f} days): give {latest}"
        )
    if n < SECONDS_PER_DAY:
        raise ValueError(
            f"trace {path} has {n} s; the forecaster trains on the trace's first days, so it needs at least "
            f"one whole day ({SECONDS_PER_DAY} s)"
        )


@dataclass(frozen=True)
class Window:
    pieces: Pieces
    note: str | None  # why its figures may look better than they will, if they may


def window(trace: np.ndarray, *, pattern: str | None, start: int | None, duration: int, path) -> Window:
    """The window `--pattern NAME` or `--start SECOND --duration S` names in `trace` (read from `path`)."""
    if pattern:
        return Window(ev.test_patterns(trace)[pattern].pieces, None)
    if start is None:
        raise ValueError("give --pattern NAME or --start SECOND (with --duration)")
    check_window(trace, start, duration, path)
    note = None
    if ev.trains_on(trace, start):
        note = (
            f"note: second {start} lies in days {ev.TRAIN_DAYS[0]}-{ev.TRAIN_DAYS[1]}, which the "
            "forecaster trains on: its forecasts have seen this load, so they look better than they will"
        )
    return Window(((start, duration),), note)


def replay(
    spec_path: str,
    trace: np.ndarray,
    pieces: Pieces,
    policies: Sequence[str],
    *,
    forecaster: str,
    seed: int = 0,
    overrides: dict | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, SimResult]:
    """`spec_path` replayed on `pieces` under each policy, with one forecaster fitted on the trace's
    first days for all; a bad spec or an unknown policy fails before the fit."""
    ev.check_cases([spec_path], policies)
    if say:
        say(f"fitting the {forecaster} forecaster on days 0-9 of the trace")
    fitted = ev.fit_forecaster(trace, model=forecaster, seed=seed)
    return {
        policy: ev.run_case(spec_path, trace, pieces, policy, fitted=fitted, seed=seed, overrides=overrides)
        for policy in policies
    }
