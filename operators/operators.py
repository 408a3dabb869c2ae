"""Operators: templated arguments in, one engine call, plain JSON out (through XCom).

One module per family: forecast.py, adaptation.py (plan, reconcile, record, and the loop that runs the
step on a short cadence), profile.py (in-process, or a pod on a GPU node). This module re-exports them,
so DAGs keep importing `from ipa_airflow_provider.operators import ...`.
"""

from __future__ import annotations

from .adaptation import (
    OUTCOME_KEY,
    IpaAdaptationLoopOperator,
    IpaPlanOperator,
    IpaReconcileOperator,
    IpaRecordDecisionOperator,
)
from .forecast import IpaForecastOperator
from .profile import IpaProfileOperator, gpu_profile_pod

__all__ = [
    "OUTCOME_KEY",
    "IpaAdaptationLoopOperator",
    "IpaForecastOperator",
    "IpaPlanOperator",
    "IpaProfileOperator",
    "IpaReconcileOperator",
    "IpaRecordDecisionOperator",
    "gpu_profile_pod",
]
