"""Forecasters by name, and point models by kind: the names the CLI, the settings and the MLflow store
use. (The MLflow store of profiles is ipa_airflow/registry; this is only a table of names.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .base import Forecaster, PointModel
from .models.arima import Ar1Peak, Arima
from .models.exp_smoothing import ExpSmoothing, SmoothedPeak
from .models.level import Level, LevelMargins
from .models.lstm import Lstm, LstmPeak, QuantileLstm
from .models.onsets import WithOnsets
from .models.seasonal import Seasonal
from .models.simple import LastBinPeak, Reactive, WindowMax, WindowPeak


def _hourly_lstm_quantile(**kwargs) -> Seasonal:
    return Seasonal(QuantileLstm(**kwargs), name="lstm-quantile-hourly")


def _lstm_quantile_onsets(**kwargs) -> WithOnsets:
    return WithOnsets(QuantileLstm(**kwargs), name="lstm-quantile-onsets")


def _hourly_lstm_quantile_onsets(**kwargs) -> WithOnsets:
    return WithOnsets(_hourly_lstm_quantile(**kwargs), name="lstm-quantile-hourly-onsets")


FORECASTERS: dict[str, Callable[..., Forecaster]] = {
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

# The default, chosen by its quantile loss at the planner's 0.99 on held-out days across rolling origins
# (`ipa forecast select`; the table is in docs/evaluation.md#choosing-the-default-forecaster).
DEFAULT_FORECASTER = "lstm-quantile-hourly-onsets"

POINT_MODELS: dict[str, type[PointModel]] = {
    cls.kind: cls for cls in (LastBinPeak, WindowPeak, LevelMargins, Ar1Peak, SmoothedPeak, LstmPeak)
}


def forecaster(name: str, **kwargs) -> Forecaster:
    try:
        return FORECASTERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown forecaster '{name}'; choose one of {', '.join(FORECASTERS)}") from None


def point_model_from_dict(d: Mapping[str, Any], *, module: Any = None) -> PointModel:
    """The point model `d` (a PointModel.to_dict()) describes; `module`: an LSTM's trained module."""
    try:
        cls = POINT_MODELS[d["kind"]]
    except KeyError:
        raise ValueError(f"unknown point model '{d.get('kind')}'; known: {', '.join(POINT_MODELS)}") from None
    return cls.from_dict(d, module=module)
