"""Operators: templated arguments in, one engine call, plain JSON out (through XCom).

One module per family: forecast.py, adaptation.py (plan, reconcile, record, and the loop that runs the
step on a short cadence), fleet.py (a fleet's pipelines decided together), profile.py (in-process, or a
pod on another node pool). This module
re-exports them, so DAGs keep importing `from ipa_airflow_provider.operators import ...`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adaptation import (
    OUTCOME_KEY,
    IpaAdaptationLoopOperator,
    IpaPlanOperator,
    IpaReconcileOperator,
    IpaRecordDecisionOperator,
    IpaReprofileOperator,
)
from .fleet import IpaFleetAdaptationOperator
from .forecast import IpaForecastOperator

# profile.py imports the Kubernetes provider (a second or so): loaded on first use, so only the DAGs that
# profile pay for it at parse time.
_PROFILE = ("IpaProfileOperator", "IpaProfilePodOperator", "gpu_profile_pod")
if TYPE_CHECKING:
    from .profile import IpaProfileOperator, IpaProfilePodOperator, gpu_profile_pod


def __getattr__(name: str):
    if name in _PROFILE:
        from . import profile

        return getattr(profile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OUTCOME_KEY",
    "IpaAdaptationLoopOperator",
    "IpaFleetAdaptationOperator",
    "IpaForecastOperator",
    "IpaPlanOperator",
    "IpaProfileOperator",
    "IpaProfilePodOperator",
    "IpaReconcileOperator",
    "IpaRecordDecisionOperator",
    "IpaReprofileOperator",
    "gpu_profile_pod",
]
