import json

import pytest

from ipa_airflow.cli import main
from ipa_airflow.optimizer import POLICIES
from tests.conftest import PIPELINES, PROFILES


def test_validate_ok(capsys):
    assert main(["validate", str(PIPELINES / "video-gpu.yaml")]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")


def test_validate_reports_errors_with_paths(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: x\n"
        "stages:\n"
        "  - name: a\n"
        "    variants:\n"
        "      - {name: v, accuracy: -1, shapes: [{hardware: h, resources: {cpu: 1}}]}\n"
    )
    assert main(["validate", str(spec), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    paths = {e["path"] for e in out["errors"]}
    assert {"sla_s", "stages[0].variants[0].accuracy"} <= paths


def test_validate_names_a_missing_profile(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"name: x\nsla_s: 1\nprofiles: [{PROFILES / 'h100_torchvision.json'}]\n"
        "stages:\n  - name: a\n    variants:\n"
        "      - {name: resnet18, accuracy: 70,\n"
        "         shapes: [{hardware: h100, dtype: fp16, resources: {gpu: 2}}]}\n"
    )
    assert main(["validate", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "stages[0].variants[0].shapes[0]" in err and "resnet18/h100/fp16/gpu=2" in err


def test_plan_json_and_table(capsys, tmp_path):
    out_file = tmp_path / "plan.json"
    assert (
        main(["plan", str(PIPELINES / "video-gpu.yaml"), "--load", "120", "--json", "--out", str(out_file)])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out_file.read_text())
    assert printed["feasible"] is True and printed["status"] == "Optimal"
    assert {s["stage"] for s in printed["stages"]} == {"detect", "classify"}
    for key in ("accuracy", "cost", "objective", "solve_time_s", "latency_s", "plan_id"):
        assert key in printed
    assert main(["plan", str(PIPELINES / "video-gpu.yaml"), "--load", "120", "--policy", "fa2-low"]) == 0
    table = capsys.readouterr().out
    assert "frcnn-mnv3-320" in table and "feasible" in table


def test_plan_infeasible_does_not_fail(capsys):
    assert main(["plan", str(PIPELINES / "video-gpu.yaml"), "--load", "1e7", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["feasible"] is False and printed["binding"]


def test_plan_on_a_bad_spec_is_a_clear_error(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nsla_s: fast\nstages: []\n")
    assert main(["plan", str(spec), "--load", "1"]) == 2
    err = capsys.readouterr().err
    assert "sla_s" in err and "stages" in err


@pytest.mark.parametrize("accuracy", ["sum", "product"])
def test_bench_solver_small_grid(capsys, accuracy):
    args = ["bench", "solver", "--accuracy", accuracy, "--max-stages", "3", "--max-variants", "3", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["grid"]) == 9
    assert report["brute_force_checked"] == 9 * 5  # every point of this small grid is enumerable
    assert report["mismatches"] == 0


def test_demo_plans_every_example_pipeline_under_every_policy(capsys):
    assert main(["demo", "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)
    pipelines = {p["pipeline"] for p in plans}
    assert pipelines == {"video-cpu", "video-gpu", "video-3stage-gpu"}
    assert {p["policy"] for p in plans} == set(POLICIES)
    assert all(p["stages"] for p in plans)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["forecast", "backtest", "--trace", "t.txt", "--quantile", "1.5"], "strictly between 0 and 1"),
        (["forecast", "backtest", "--trace", "t.txt", "--quantile", "high"], "a number such as 0.95"),
        (["simulate", "evaluate", "--quantile", "0.97"], "choose from 0.8, 0.9, 0.95, 0.99"),
        (["simulate", "evaluate", "--latency-headroom", "1"], "at least 0 and below 1"),
        (["simulate", "evaluate", "--latency-headroom", "20%"], "a share of the SLA such as 0.2"),
    ],
)
def test_a_bad_quantile_is_refused_before_any_work(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["simulate", "{bad}", "--pattern", "bursty"], "not valid YAML"),
        (["simulate", "{good}", "--pattern", "bursty", "--policy", "ipa,hpa,nope"], "unknown policy 'nope'"),
        (["simulate", "evaluate", "--pipelines", "{good},{bad}"], "not valid YAML"),
        (
            ["simulate", "evaluate", "--pipelines", "{good}", "--policies", "ipa,nope"],
            "unknown policy 'nope'",
        ),
    ],
)
def test_simulate_refuses_a_bad_spec_or_policy_before_fitting_the_forecaster(
    argv, says, tmp_path, capsys, monkeypatch
):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted the forecaster before checking the cases")

    monkeypatch.setattr("ipa_airflow.simulation.experiments.fit_forecaster", no_fit)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages: [\n")
    paths = {"bad": str(bad), "good": str(PIPELINES / "video-cpu.yaml")}
    assert main([a.format(**paths) for a in argv]) == 2
    assert says in capsys.readouterr().err


def test_simulating_the_patterns_of_a_short_trace_says_what_it_needs(tmp_path, capsys, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted the forecaster for patterns that cannot be found")

    monkeypatch.setattr("ipa_airflow.simulation.experiments.fit_forecaster", no_fit)
    trace = tmp_path / "three-days.txt"
    trace.write_text("\n".join(["40"] * 3 * 86_400))
    spec = str(PIPELINES / "video-cpu.yaml")
    for argv in (
        ["simulate", spec, "--pattern", "bursty"],
        ["simulate", "evaluate", "--pipelines", spec, "--out", str(tmp_path / "out")],
    ):
        assert main([*argv, "--trace", str(trace), "--damping", "1"]) == 2
        err = capsys.readouterr().err
        assert "need a trace of 11 days or more; this one has 3.0" in err and "--start SECOND" in err


def test_a_window_in_the_training_days_is_simulated_with_a_note_that_the_forecaster_saw_it(tmp_path, capsys):
    trace = tmp_path / "two-days.txt"
    trace.write_text("\n".join(["40"] * 2 * 86_400))
    spec = str(PIPELINES / "video-cpu.yaml")
    argv = ["simulate", spec, "--trace", str(trace), "--damping", "1", "--forecaster", "level"]
    assert main([*argv, "--start", "90000", "--duration", "300", "--policy", "ipa"]) == 0
    assert "second 90000 lies in days 0-9, which the forecaster trains on" in capsys.readouterr().err


# ---- bad arguments are refused by argparse, naming the flag, before any work -------------------------
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["forecast", "export", "--prometheus", "http://x", "--days", "100000", "--out", "t"],
            "from 1 to 366",
        ),
        (["simulate", "s.yaml", "--damping", "nan"], "argument --damping: a damping factor is above 0"),
        (["forecast", "backtest", "--trace", "t", "--damping", "inf"], "argument --damping"),
        (["simulate", "s.yaml", "--duration", "0"], "argument --duration: a duration in seconds is from 1"),
        (["plan", "s.yaml", "--load", "-1"], "argument --load: a load in requests per second is at least 0"),
        (["plan", "s.yaml", "--load", "1", "--tracking-uri", "ftp://h/x"], "scheme ftp://, which MLflow"),
        (["bench", "solver", "--repeats", "0"], "argument --repeats"),
    ],
)
def test_bad_numbers_and_uris_are_refused_by_argparse_naming_the_flag(argv, says, capsys, monkeypatch):
    monkeypatch.setattr("ipa_airflow.cli.planning.load_pipeline", pytest.fail)  # nothing may start
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("command", ["plan", "manifests"])
def test_out_into_a_missing_folder_is_refused_before_the_solve_and_creates_nothing(command, tmp_path, capsys):
    out = tmp_path / "nodir" / "out.json"
    with pytest.raises(SystemExit):
        main([command, str(PIPELINES / "video-cpu.yaml"), "--load", "10", "--out", str(out)])
    assert "does not exist (create it first: mkdir -p" in capsys.readouterr().err
    assert not out.parent.exists()


def test_manifests_of_a_missing_plan_file_names_it(tmp_path, capsys):
    missing = tmp_path / "nosuch.json"
    assert main(["manifests", str(PIPELINES / "video-cpu.yaml"), "--plan", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_simulate_a_window_past_the_end_of_the_trace_says_where_the_trace_ends(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ipa_airflow.simulation.experiments.fit_forecaster", pytest.fail)
    trace = tmp_path / "day.txt"
    trace.write_text("\n".join(["4"] * 86_400))
    argv = ["simulate", str(PIPELINES / "video-cpu.yaml"), "--trace", str(trace), "--damping", "1"]
    assert main([*argv, "--start", "86000", "--duration", "600"]) == 2
    err = capsys.readouterr().err
    assert "ends at second 86600, after the end of trace" in err and "--start 85800 at the latest" in err


def test_an_mlflow_tracking_uri_from_the_environment_is_checked_too(monkeypatch):
    from ipa_airflow.settings import load_settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://example.org/mlruns")
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI 'ftp://example.org/mlruns' has scheme ftp://"):
        load_settings()


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///x.db",
        "postgresql+psycopg2://u@h/db",
        "http://mlflow:5000",
        "https://m",
        "mlruns",
        "file:///m",
    ],
)
def test_tracking_uris_mlflow_can_use_are_accepted(uri):
    from ipa_airflow.settings import check_tracking_uri

    assert check_tracking_uri(uri) == uri


# ---- main: user errors, bugs and interrupts ------------------------------------------------------------
def _raising(exc):
    def cmd(args):
        raise exc

    return cmd


def test_an_unexpected_exception_is_an_internal_error_exit_3_without_a_traceback(monkeypatch, capsys):
    monkeypatch.delenv("IPA_DEBUG", raising=False)
    monkeypatch.setattr("ipa_airflow.cli.planning.cmd_validate", _raising(TypeError("unsupported operand")))
    assert main(["validate", "x.yaml"]) == 3
    err = capsys.readouterr().err
    assert "error: internal error: TypeError: unsupported operand" in err and "IPA_DEBUG=1" in err
    assert "Traceback" not in err


def test_ipa_debug_shows_the_traceback_of_an_internal_error(monkeypatch):
    monkeypatch.setenv("IPA_DEBUG", "1")
    monkeypatch.setattr("ipa_airflow.cli.planning.cmd_validate", _raising(TypeError("unsupported operand")))
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["validate", "x.yaml"])


def test_a_user_error_exits_2_and_an_interrupt_130(monkeypatch, capsys):
    monkeypatch.setattr(
        "ipa_airflow.cli.planning.cmd_validate", _raising(FileNotFoundError(2, "No such file", "a.yaml"))
    )
    assert main(["validate", "x.yaml"]) == 2
    assert capsys.readouterr().err == "error: a.yaml: No such file\n"
    monkeypatch.setattr("ipa_airflow.cli.planning.cmd_validate", _raising(KeyboardInterrupt()))
    assert main(["validate", "x.yaml"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    monkeypatch.setattr("ipa_airflow.cli.planning.cmd_validate", _raising(RecursionError("deep")))
    assert main(["validate", "x.yaml"]) == 3  # a RuntimeError, but a bug


# ---- one train-and-register rule for `ipa forecast train` and the weekly DAG ----------------------------
def test_forecast_train_registers_only_a_forecaster_better_than_the_registered_one(
    tmp_path, capsys, monkeypatch
):
    import numpy as np

    from ipa_airflow.forecasting import retrain
    from ipa_airflow.forecasting.catalog import forecaster
    from ipa_airflow.registry.mlflow_profiles import RegistryError

    trace = tmp_path / "t.txt"
    load = np.random.default_rng(0).poisson(40 + 20 * np.sin(2 * np.pi * np.arange(2 * 86_400) / 86_400))
    trace.write_text("\n".join(str(int(v)) for v in load))
    registry: dict = {}  # version -> fitted forecaster: an MLflow stand-in

    def load_latest(uri, *, tracking_uri):
        if not registry:
            raise RegistryError(f"MLflow has no {uri}")
        return registry[max(registry)]

    def log(fitted, **kwargs):
        registry[len(registry) + 1] = fitted
        return f"run{len(registry)}", str(len(registry))

    monkeypatch.setattr(retrain, "check_reachable", lambda uri: None)
    monkeypatch.setattr(retrain, "forecaster", lambda name: forecaster("level"))  # quick, in place of an LSTM
    monkeypatch.setattr(retrain, "load_forecaster", load_latest)
    monkeypatch.setattr(retrain, "log_forecaster", log)
    argv = ["forecast", "train", "--trace", str(trace), "--damping", "1", "--train-days", "0"]
    argv += ["--test-days", "1", "--model", "lstm", "--tracking-uri", "http://mlflow.test"]

    assert main([*argv, "--json"]) == 0  # none registered yet: registered
    first = json.loads(capsys.readouterr().out)
    assert first["registered"] and first["model_uri"] == "models:/ipa-load-forecaster/1"
    assert {"point_mape", "q095_under_prediction_rate", "q099_quantile_loss"} <= set(first["metrics"])
    assert "current_metrics" not in first

    assert main([*argv, "--json"]) == 0  # the same forecaster again: no better, so no new version
    again = json.loads(capsys.readouterr().out)
    assert not again["registered"] and again["model_uri"] is None and len(registry) == 1
    assert again["current_metrics"]["q099_quantile_loss"] == again["metrics"]["q099_quantile_loss"]
    assert main(argv) == 0
    assert "not registered: the new lstm forecaster's quantile loss at q0.99" in capsys.readouterr().out


# ---- the end-to-end demo lives in the Airflow layer --------------------------------------------------
def test_demo_end_to_end_without_airflow_says_what_to_install_before_any_step(tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "airflow" else find_spec(name, *a)
    )
    assert main(["demo", "--end-to-end", "--home", str(tmp_path / "home")]) == 2
    assert "runs the DAGs through Airflow and needs airflow" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_the_engine_never_imports_airflow_or_the_airflow_layer():
    """The import graph points one way: the Airflow layer (ipa_airflow_provider) imports the engine,
    never the reverse. `ipa demo --end-to-end` reaches the layer's demo by name, at run time only."""
    import ast
    from pathlib import Path

    import ipa_airflow

    found = []
    for path in Path(ipa_airflow.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            found += [f"{path}: {n}" for n in names if n.split(".")[0] in ("airflow", "ipa_airflow_provider")]
    assert not found
