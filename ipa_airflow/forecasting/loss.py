"""The pinball (quantile) loss: the one formula that trains quantile heads, picks the `level` model's
exponent and scores quantile forecasts in every backtest.

For a forecast f of the q quantile of y, each decision costs q * (y - f) when the peak came above the
forecast and (1 - q) * (f - y) when it stayed below: a miss weighs q, a margin 1 - q. Its mean is lowest
for the forecast that covers the q share of peaks and sits as close above them as it can.

One definition for NumPy arrays and torch tensors alike (the LSTM trains on tensors, so its loss needs
gradients): only the elementwise maximum differs between the two libraries, and both are asked for it
through the array itself, so the arithmetic, and every figure trained or scored with it, is the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pinball_loss(forecast: Any, actual: Any, q: Any, *, scale: Any = None) -> Any:
    """The mean pinball loss of `forecast` as the q quantile of `actual`, each error divided by `scale`
    (a number or one per decision, e.g. the peak itself for a relative loss; None: absolute errors).
    `q` may be an array of quantiles broadcast against the last axis (one per head). Returns the array
    library's scalar: a NumPy float, or a 0-d torch tensor that carries the gradient."""
    err = actual - forecast
    if scale is not None:
        err = err / scale
    return _maximum(q * err, (q - 1) * err).mean()


def _maximum(a: Any, b: Any) -> Any:
    # torch.Tensor.maximum is torch.maximum; NumPy arrays have no such method.
    return np.maximum(a, b) if isinstance(a, np.ndarray | np.generic) else a.maximum(b)
