"""The estimators: one module per forecaster family, each a constructor holding structure and a `fit`
that returns a base.FittedForecaster (its point model, defined beside it, plus a calibration).

- simple: `reactive` and `max`, the paper's baselines
- level: the current rate plus a count-noise margin
- arima, exp_smoothing: statsmodels fits, forecast in closed form
- lstm: the paper's LSTM and the quantile LSTM (torch)
- seasonal, onsets: layers around any of them that know the clock (the tables are in ../clock.py)

catalog.py names them; backtesting/ scores them.
"""
