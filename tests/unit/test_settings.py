"""The settings tree: built once from a mapping, the same names and defaults the DAGs read before, and a
clear error naming the variable for a value ipa cannot use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ipa_airflow.settings import (
    MLFLOW_CLIENT_DEFAULTS,
    REPO,
    SettingsError,
    default_specs_dir,
    default_trace,
    load_settings,
    webhook_secret,
)


def test_the_defaults_are_the_ones_the_dags_and_operators_used(tmp_path):
    s = load_settings({}, home=tmp_path)
    assert s.home == tmp_path
    assert s.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.mlflow.artifact_root == (tmp_path / "mlartifacts").as_uri()
    assert s.mlflow.conn_id == "ipa_mlflow_default"
    assert s.specs_dir == REPO / "profiles" / "pipelines"
    assert (s.load.source, s.load.history_days) == ("trace", 14)
    assert s.load.trace == REPO / "data" / "traces" / "twitter_trace_rps_days00-13.txt.gz"
    from ipa_airflow.forecasting.sources import PrometheusSource

    assert s.load.prometheus_query == PrometheusSource.query
    assert s.load.prometheus_conn_id == "ipa_prometheus_default"
    assert (s.cluster.backend, s.cluster.kubernetes_conn_id) == ("simulated", "kubernetes_default")
    assert s.cluster.simulated_state_file == tmp_path / "cluster" / "simulated.json"
    assert s.cluster.simulated_startup_s == 0.0
    f = s.forecaster
    assert (f.registered_name, f.model, f.registered_uri, f.plan_quantile) == (
        "ipa-load-forecaster",
        "lstm-quantile-hourly-onsets",
        None,
        None,
    )
    from ipa_airflow.forecasting.catalog import DEFAULT_FORECASTER

    assert f.model == DEFAULT_FORECASTER  # settings are built without importing the models: kept equal here
    assert (f.train_days, f.test_days) == ("0-9", "10-13")
    assert (s.profiling.hardware, s.profiling.threads, s.profiling.batch_sizes) == (
        "airflow-cpu",
        (1, 2),
        (1, 2, 4, 8),
    )
    assert s.loop_s is None
    assert (s.schedules.adaptation, s.schedules.poll, s.schedules.train) == (
        "* * * * *",
        "@hourly",
        "@weekly",
    )
    assert (s.webhook_secret, s.serving_runtime, s.debug) == ("", None, False)


def test_the_default_query_is_the_prometheus_sources():
    from ipa_airflow.forecasting.sources import PrometheusSource

    assert load_settings({}).load.prometheus_query == PrometheusSource.query


def test_every_variable_lands_in_its_place(tmp_path):
    env = {
        "IPA_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "IPA_MLFLOW_ARTIFACT_ROOT": "s3://bucket/ipa",
        "IPA_SERVING_RUNTIME": "torch-2.5",
        "IPA_SPECS_DIR": str(tmp_path / "specs"),
        "IPA_TRACE": str(tmp_path / "t.txt"),
        "IPA_LOAD_SOURCE": "prometheus",
        "IPA_PROMETHEUS_QUERY": "sum(irate(x[5s]))",
        "IPA_HISTORY_DAYS": "2",
        "IPA_CLUSTER_BACKEND": "kubernetes",
        "IPA_SIMULATED_STARTUP_S": "10",
        "IPA_FORECASTER_NAME": "f",
        "IPA_FORECASTER_MODEL": "lstm-quantile-onsets",
        "IPA_FORECASTER_URI": "models:/f/latest",
        "IPA_PLAN_QUANTILE": "0.95",
        "IPA_TRAIN_DAYS": "0",
        "IPA_TEST_DAYS": "1",
        "IPA_PROFILE_HARDWARE": "m5",
        "IPA_PROFILE_THREADS": "1, 4",
        "IPA_PROFILE_BATCHES": "1,16",
        "IPA_ADAPTATION_LOOP_S": "600",
        "IPA_POLL_SCHEDULE": "@daily",
        "IPA_TRAIN_SCHEDULE": "@monthly",
        "IPA_WEBHOOK_SECRET": "s3cret",
        "IPA_DEBUG": "1",
    }
    s = load_settings(env)
    assert s.home == tmp_path.resolve() and s.mlflow.tracking_uri == "http://mlflow:5000"
    assert s.mlflow.artifact_root == "s3://bucket/ipa" and s.serving_runtime == "torch-2.5"
    assert s.specs_dir == tmp_path / "specs" and s.load.trace == tmp_path / "t.txt"
    assert (s.load.source, s.load.prometheus_query, s.load.history_days) == (
        "prometheus",
        "sum(irate(x[5s]))",
        2,
    )
    assert (s.cluster.backend, s.cluster.simulated_startup_s) == ("kubernetes", 10.0)
    f = s.forecaster
    assert (f.registered_name, f.model, f.registered_uri) == ("f", "lstm-quantile-onsets", "models:/f/latest")
    assert (f.plan_quantile, f.train_days, f.test_days) == (0.95, "0", "1")
    assert (s.profiling.hardware, s.profiling.threads, s.profiling.batch_sizes) == ("m5", (1, 4), (1, 16))
    # In loop mode a run lasts loop_s and the next starts when it ends.
    assert s.loop_s == 600.0 and s.schedules.adaptation == "@continuous"
    assert (s.schedules.poll, s.schedules.train) == ("@daily", "@monthly")
    assert (s.webhook_secret, s.debug) == ("s3cret", True)


def test_schedule_none_means_by_hand_and_a_zero_loop_means_no_loop():
    assert load_settings({"IPA_ADAPTATION_SCHEDULE": "none"}).schedules.adaptation is None
    zero = load_settings({"IPA_ADAPTATION_LOOP_S": "0"})
    assert zero.loop_s is None and zero.schedules.adaptation == "* * * * *"
    assert load_settings({"IPA_ADAPTATION_SCHEDULE": "*/5 * * * *"}).schedules.adaptation == "*/5 * * * *"


def test_an_empty_variable_counts_as_unset():
    names = ["IPA_LOAD_SOURCE", "IPA_CLUSTER_BACKEND", "IPA_HISTORY_DAYS", "IPA_PLAN_QUANTILE"]
    names += ["IPA_PROFILE_THREADS", "IPA_ADAPTATION_LOOP_S", "IPA_FORECASTER_URI", "IPA_TRAIN_SCHEDULE"]
    assert load_settings(dict.fromkeys(names, "")) == load_settings({})


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("IPA_ADAPTATION_LOOP_S", "ten", "is not a number"),
        ("IPA_ADAPTATION_LOOP_S", "-5", "must be a non-negative number"),
        ("IPA_ADAPTATION_LOOP_S", "inf", "must be a non-negative number"),
        ("IPA_SIMULATED_STARTUP_S", "-1", "must be a non-negative number"),
        ("IPA_PLAN_QUANTILE", "high", "is not a number"),
        ("IPA_PLAN_QUANTILE", "99", "must be below 1"),
        ("IPA_PLAN_QUANTILE", "0", "must be a positive number"),
        ("IPA_HISTORY_DAYS", "1.5", "is not a whole number"),
        ("IPA_HISTORY_DAYS", "0", "must be at least 1"),
        ("IPA_PROFILE_THREADS", "1,two", "is not a comma-separated list of whole numbers"),
        ("IPA_PROFILE_BATCHES", "1,0", "every value must be at least 1"),
        ("IPA_CLUSTER_BACKEND", "k8s", "must be one of 'simulated', 'kubernetes'"),
        ("IPA_LOAD_SOURCE", "kafka", "must be one of 'trace', 'prometheus'"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(name, value, says):
    with pytest.raises(SettingsError, match=re.escape(f"{name}={value!r}") + ".*" + re.escape(says)):
        load_settings({name: value})


def test_a_bad_tracking_uri_is_refused_naming_its_source():
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI 'ftp://x/m' has scheme ftp://"):
        load_settings({"MLFLOW_TRACKING_URI": "ftp://x/m"})


def test_a_given_mapping_is_all_that_is_read(monkeypatch):
    monkeypatch.setenv("IPA_CLUSTER_BACKEND", "nonsense")
    monkeypatch.setenv("IPA_WEBHOOK_SECRET", "from-the-process")
    assert load_settings({}).cluster.backend == "simulated"
    assert webhook_secret({}) == ""
    assert default_trace({"IPA_TRACE": "/t"}) == Path("/t")
    assert default_specs_dir({"IPA_SPECS_DIR": "/s"}) == Path("/s")
    with pytest.raises(SettingsError, match="IPA_CLUSTER_BACKEND='nonsense'"):
        load_settings()  # the default mapping is the process environment


def test_the_tree_is_frozen():
    s = load_settings({})
    with pytest.raises(AttributeError):
        s.loop_s = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.cluster.backend = "kubernetes"  # type: ignore[misc]


def test_importing_the_mlflow_registry_leaves_the_environment_alone():
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import ipa_airflow.registry.mlflow_profiles, ipa_airflow.registry\n"
        "sys.exit(0 if dict(os.environ) == before else 1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_mlflow_client_defaults_apply_when_a_client_is_made_and_yield_to_the_users(monkeypatch):
    from ipa_airflow.registry.mlflow_profiles import use_client_defaults

    for name in MLFLOW_CLIENT_DEFAULTS:
        monkeypatch.delenv(name, raising=False)  # restored after the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    use_client_defaults()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "20"
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


# Reading the environment is the settings module's job: the DAGs call load_settings() and pass plain values.
_READ = re.compile(r"""(?:environ\.get\(|getenv\(|environ\[)\s*["']IPA_\w+["']\s*(?!\]\s*=[^=])""")


def test_no_module_but_the_settings_reads_an_ipa_variable():
    roots = [REPO / "ipa_airflow", REPO / "operators", REPO / "dags"]
    readers = [
        f"{path.relative_to(REPO)}:{text[: m.start()].count(chr(10)) + 1}"
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if path != REPO / "ipa_airflow" / "settings.py"
        for text in [path.read_text()]
        for m in _READ.finditer(text)
    ]
    assert readers == []


def test_every_variable_the_settings_read_is_documented():
    source = (REPO / "ipa_airflow" / "settings.py").read_text()
    names = set(re.findall(r'"(IPA_[A-Z_]+|MLFLOW_TRACKING_URI)"', source))
    assert len(names) >= 25
    table = (REPO / "docs" / "airflow.md").read_text()
    assert sorted(n for n in names if f"`{n}`" not in table) == []
