"""Load forecasting: where the request rate comes from, and what it will be in the next interval.

- sources: traces and Prometheus (the load); windows: the problem (last 12 bins -> next 20 s's peak)
- base: the interface (Forecast, FittedForecaster = a point model plus its calibration)
- models/: the estimators; clock: the hour's tables clock-aware models keep; calibration: held-out
  quantiles; loss: the one pinball loss
- catalog: forecasters by name; mlflow_store: fitted forecasters in MLflow; retrain: the weekly rule
- step: one forecast for a controller, with its fallbacks
- backtesting/: scoring forecasters on held-out days (backtest, misses, frontier, comparison)
"""
