"""Profiles in and out of MLflow: one run per profile, model-version tags, staleness keys."""

from .keys import ProfileKey, runtime_of
from .mlflow_profiles import MlflowProfileRegistry, RegistryError, registry_for

__all__ = ["MlflowProfileRegistry", "ProfileKey", "RegistryError", "registry_for", "runtime_of"]
