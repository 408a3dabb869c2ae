"""The forecaster comparison users ask for: every forecaster, point and upper quantiles, plus the paper's
LSTM with a fixed safety margin, backtested on the same days."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .backtest import backtest, evaluate
from .registry import FORECASTERS, forecaster
from .sources import days
from .windows import samples

QUANTILES = (0.9, 0.95)
MARGINS = (0.1, 0.2)  # InfAdapter's 10 %, IPA's 20 %


def compare(
    series: np.ndarray,
    *,
    train_days: tuple[int, int],
    test_days: tuple[int, int],
    models: Sequence[str] = tuple(FORECASTERS),
    quantiles: Sequence[float] = QUANTILES,
    seed: int = 0,
    on_model: Callable[[str], None] | None = None,
) -> dict:
    train, test = days(series, *train_days), days(series, *test_days)
    rows = []
    for name in models:
        if on_model:
            on_model(name)
        fitted = forecaster(name).fit(train, seed=seed)
        rows.append(backtest(fitted, train, test).to_dict())
        rows += [backtest(fitted, train, test, quantile=q).to_dict() for q in quantiles]
        if name == "lstm":
            # The paper's way to be safe: the point forecast times a fixed margin.
            X, y = samples(
                np.concatenate([train[-fitted.window.history_s :], test]),
                fitted.window,
                first_decision_s=fitted.window.history_s,
            )
            point = fitted.predict(X)
            for m in MARGINS:
                row = {
                    "model": "lstm",
                    "quantile": None,
                    "margin": m,
                    "decisions": len(y),
                    **{k: round(v, 5) for k, v in evaluate(point * (1 + m), y).items()},
                }
                rows.append(row)
    return {"train_days": list(train_days), "test_days": list(test_days), "rows": rows}
