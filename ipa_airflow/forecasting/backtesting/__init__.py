"""Scoring forecasters on held-out days, apart from the estimators (models/) they score.

- backtest: walk a fitted forecaster over test days at the paper's cadence, then score the walk
- misses: where a walk missed, by minute of the hour and hour of the day
- frontier: the over-provisioning each under-prediction rate costs, and the oracles' references
- comparison: every forecaster on the same days (`ipa forecast compare`)
"""
