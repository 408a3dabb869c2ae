"""Small torch LSTMs for the next interval's peak.

- `lstm`: the paper's setting: the 12 bin maxima in, the max rate of the next 20 s out, squared error.
- `lstm-quantile`: bin maxima and means in, several quantiles of that max out (pinball loss), then
  conformally corrected on held-out data, so the planner gets a calibrated upper quantile of the next
  peak instead of a point with a fixed margin.

The input scale is a buffer of the module, so the saved model (and the MLflow model) is self-contained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..base import FittedForecaster, fit_with_calibration
from ..loss import pinball_loss
from ..windows import MAX, WindowSpec, samples

HEAD_QUANTILES = (0.5, 0.8, 0.9, 0.95, 0.99)
# The bin features a module reads: the paper's maxima alone, or maxima and means.
INPUTS = {"max": slice(MAX, MAX + 1), "max+mean": slice(0, 2)}
MIN_STEPS = 1200  # short histories get more epochs, so every model sees about as many updates


def build_module(hidden: int, scale: float, features: int, outputs: int):
    import torch

    class LoadLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(features, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, outputs)
            self.register_buffer("scale", torch.tensor(float(scale)))

        def forward(self, x):  # x: (n, bins, features) in req/s
            out, _ = self.lstm(x / self.scale)
            y = self.head(out[:, -1, :]) * self.scale
            return y.squeeze(-1) if y.shape[-1] == 1 else y

    return LoadLSTM()


def _train(module, X, y, loss_fn, *, epochs, batch_size, lr, seed) -> list[float]:
    import math

    import torch

    epochs = max(epochs, math.ceil(MIN_STEPS / max(1, math.ceil(len(X) / batch_size))))
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(Xt), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            loss = loss_fn(module(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(round(total / len(order), 6))
    module.eval()
    return losses


def run_module(module, X: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.as_tensor(X, dtype=torch.float32)).numpy().astype(float)


@dataclass(frozen=True)
class LstmPeak:
    """A trained module read on the `inputs` features: the point alone, or quantile heads at `levels`
    (made non-crossing) whose head nearest the median is the point. `to_dict` leaves the module out:
    the MLflow store keeps it in torch's own format and passes it back to `from_dict`."""

    kind: ClassVar[str] = "lstm"
    module: Any = field(compare=False, repr=False)
    inputs: str = "max"
    levels: tuple[float, ...] = ()

    def __post_init__(self):
        if self.inputs not in INPUTS:
            raise ValueError(f"an LSTM reads {' or '.join(INPUTS)}, not '{self.inputs}'")

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return run_module(self.module, X[:, :, INPUTS[self.inputs]])

    def heads(self, X: np.ndarray) -> np.ndarray:
        if not self.levels:
            raise TypeError("this LSTM predicts the point alone: it has no quantile heads")
        return np.maximum.accumulate(self._raw(X), axis=1)  # quantiles never cross

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not self.levels:
            return self._raw(X)
        return self.heads(X)[:, int(np.argmin(np.abs(np.asarray(self.levels) - 0.5)))]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "inputs": self.inputs, "levels": list(self.levels)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, module: Any = None) -> LstmPeak:
        if module is None:
            raise ValueError("an LSTM point model needs its trained module")
        return cls(module, d["inputs"], tuple(float(v) for v in d.get("levels", ())))


@dataclass(frozen=True)
class Lstm:
    window: WindowSpec = field(default_factory=WindowSpec)
    hidden: int = 25
    epochs: int = 4
    batch_size: int = 256
    lr: float = 3e-3
    name: str = "lstm"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        def fit_point(train: np.ndarray):
            import torch

            torch.manual_seed(seed)
            X, y = samples(train, self.window)
            X = X[:, :, INPUTS["max"]]
            scale = float(max(y.mean(), 1e-6))
            module = build_module(self.hidden, scale, features=1, outputs=1)
            losses = _train(
                module,
                X,
                y,
                lambda p, t: torch.nn.functional.mse_loss(p / scale, t / scale),
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                seed=seed,
            )
            params = {
                "hidden": self.hidden,
                "epochs": self.epochs,
                "scale": scale,
                "train_loss": losses,
                "samples": len(X),
                "seed": seed,
                "inputs": "bin maxima",
            }
            return LstmPeak(module, "max"), params

        return fit_with_calibration(self.name, self.window, series, fit_point)


@dataclass(frozen=True)
class QuantileLstm:
    window: WindowSpec = field(default_factory=WindowSpec)
    hidden: int = 25
    epochs: int = 4
    batch_size: int = 256
    lr: float = 3e-3
    quantiles: tuple[float, ...] = HEAD_QUANTILES
    name: str = "lstm-quantile"

    def fit(self, series: np.ndarray, *, seed: int = 0, start_s: int = 0) -> FittedForecaster:
        def fit_point(train: np.ndarray):
            import torch

            torch.manual_seed(seed)
            X, y = samples(train, self.window)
            scale = float(max(y.mean(), 1e-6))
            module = build_module(self.hidden, scale, features=2, outputs=len(self.quantiles))
            q_t = torch.as_tensor(np.asarray(self.quantiles), dtype=torch.float32)
            losses = _train(
                module,
                X,
                y,
                lambda pred, target: pinball_loss(pred, target[:, None], q_t, scale=scale),
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                seed=seed,
            )
            params = {
                "hidden": self.hidden,
                "epochs": self.epochs,
                "scale": scale,
                "train_loss": losses,
                "samples": len(X),
                "seed": seed,
                "inputs": "bin maxima and means",
                "head_quantiles": list(self.quantiles),
            }
            return LstmPeak(module, "max+mean", tuple(self.quantiles)), params

        return fit_with_calibration(self.name, self.window, series, fit_point)
