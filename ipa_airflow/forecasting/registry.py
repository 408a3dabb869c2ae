"""Forecasters by name."""

from __future__ import annotations

from .arima import Arima
from .exp_smoothing import ExpSmoothing
from .level import Level
from .lstm import Lstm, QuantileLstm
from .seasonal import Seasonal
from .simple import Reactive, WindowMax


def _hourly_lstm_quantile(**kwargs) -> Seasonal:
    return Seasonal(QuantileLstm(**kwargs), name="lstm-quantile-hourly")


FORECASTERS = {
    "reactive": Reactive,
    "max": WindowMax,
    "level": Level,
    "arima": Arima,
    "exp-smoothing": ExpSmoothing,
    "lstm": Lstm,
    "lstm-quantile": QuantileLstm,
    "lstm-quantile-hourly": _hourly_lstm_quantile,
}


def forecaster(name: str, **kwargs):
    try:
        return FORECASTERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown forecaster '{name}'; choose one of {', '.join(FORECASTERS)}") from None
