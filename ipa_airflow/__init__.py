"""ipa-airflow: Inference Pipeline Adaptation for multi-model inference pipelines.

The engine (specs, profiles, optimizer, forecasting, cluster, simulation) is plain Python and never
imports Airflow; the Airflow layer lives in the `ipa_airflow_provider` package.
"""

__version__ = "0.1.0"
