"""Forecasters by name."""

from __future__ import annotations

from .arima import Arima
from .exp_smoothing import ExpSmoothing
from .level import Level
from .lstm import Lstm, QuantileLstm
from .onsets import WithOnsets
from .seasonal import Seasonal
from .simple import Reactive, WindowMax


def _hourly_lstm_quantile(**kwargs) -> Seasonal:
    return Seasonal(QuantileLstm(**kwargs), name="lstm-quantile-hourly")


def _lstm_quantile_onsets(**kwargs) -> WithOnsets:
    return WithOnsets(QuantileLstm(**kwargs), name="lstm-quantile-onsets")


def _hourly_lstm_quantile_onsets(**kwargs) -> WithOnsets:
    return WithOnsets(_hourly_lstm_quantile(**kwargs), name="lstm-quantile-hourly-onsets")


FORECASTERS = {
    "reactive": Reactive,
    "max": WindowMax,
    "level": Level,
    "arima": Arima,
    "exp-smoothing": ExpSmoothing,
    "lstm": Lstm,
    "lstm-quantile": QuantileLstm,
    "lstm-quantile-hourly": _hourly_lstm_quantile,
    "lstm-quantile-onsets": _lstm_quantile_onsets,
    "lstm-quantile-hourly-onsets": _hourly_lstm_quantile_onsets,
}


def forecaster(name: str, **kwargs):
    try:
        return FORECASTERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown forecaster '{name}'; choose one of {', '.join(FORECASTERS)}") from None
