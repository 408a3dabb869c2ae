"""Forecasters by name."""

from __future__ import annotations

from .arima import Arima
from .exp_smoothing import ExpSmoothing
from .level import Level
from .lstm import Lstm, QuantileLstm
from .simple import Reactive, WindowMax

FORECASTERS = {
    "reactive": Reactive,
    "max": WindowMax,
    "level": Level,
    "arima": Arima,
    "exp-smoothing": ExpSmoothing,
    "lstm": Lstm,
    "lstm-quantile": QuantileLstm,
}


def forecaster(name: str, **kwargs):
    try:
        return FORECASTERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown forecaster '{name}'; choose one of {', '.join(FORECASTERS)}") from None
