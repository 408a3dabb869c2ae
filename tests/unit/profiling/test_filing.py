"""Measured work is never thrown away: a profile goes to disk before MLflow, a failure to file it says
where it is, and `ipa profiles push` (or the next `ipa profile`) files it. MLflow is a stand-in here;
tests/integration/test_profile_registry.py files into a real server and fails against a closed port."""

import json

import pytest

from ipa_airflow.cli import main
from ipa_airflow.profiles import BatchPoint, Profile, ProfileError, ProfileSet
from ipa_airflow.profiling.filing import (
    NotFiled,
    keep,
    keep_and_file,
    pending,
    pending_dir,
    push,
    push_pending,
)
from ipa_airflow.registry.mlflow_profiles import MlflowUnreachable, RegistryError


def profile(model="tiny", ref="models:/tiny/3") -> Profile:
    points = tuple(BatchPoint(b, 2.0 * b, 2.2 * b, 2.5 * b, 2.1 * b, 400.0) for b in (1, 2, 4))
    env = {"torch": "2.14.1+cpu", "device": "cpu", "threads": 1}
    return Profile(
        model, "ci-cpu", "fp32", "cpu=1", points, provenance={"model_ref": ref, "environment": env}
    )


class Registry:
    """Records what is filed; `down` makes every call fail as an unreachable MLflow does."""

    tracking_uri = "http://mlflow.test"

    def __init__(self, down=False):
        self.down, self.runs, self.tags = down, [], []

    def _check(self):
        if self.down:
            raise MlflowUnreachable("cannot reach MLflow at http://mlflow.test to log the profile")

    def log_profile(self, p, key, *, params=None):
        self._check()
        self.runs.append((p.id, key, params))
        return f"run-{len(self.runs)}"

    def tag_model_version(self, name, version, p, key, run_id):
        self._check()
        self.tags.append((name, version, run_id))


def test_a_profile_mlflow_refuses_stays_in_the_spool_with_the_command_that_files_it(tmp_path):
    with pytest.raises(NotFiled) as exc:
        keep_and_file(Registry(down=True), profile(), home=tmp_path)
    [kept] = pending(tmp_path)
    assert exc.value.path == kept and kept.parent == pending_dir(tmp_path)
    assert f"kept in {kept}" in str(exc.value) and f"ipa profiles push {kept}" in str(exc.value)
    assert "cannot reach MLflow" in str(exc.value)
    assert ProfileSet.load([kept]).get("tiny/ci-cpu/fp32/cpu=1") == profile()  # the whole measurement

    registry = Registry()
    report = push(registry, home=tmp_path)
    assert [f["run_id"] for f in report.filed] == ["run-1"] and pending(tmp_path) == []
    [(pid, key, params)] = registry.runs
    assert (key.model_ref, key.runtime, params["device"]) == ("models:/tiny/3", "torch==2.14.1", "cpu")
    assert registry.tags == [("tiny", "3", "run-1")]  # the model version's page shows it too


def test_filed_at_once_the_spool_is_left_empty_and_out_is_kept(tmp_path):
    registry = Registry()
    filed = keep_and_file(registry, profile(), home=tmp_path)
    assert filed.run_id == "run-1" and filed.kept is None and pending(tmp_path) == []
    out = tmp_path / "p.json"
    filed = keep_and_file(registry, profile(ref="zoo:tiny"), out=out, home=tmp_path)
    assert filed.kept == out and ProfileSet.load([out]).get("tiny/ci-cpu/fp32/cpu=1")
    assert len(registry.tags) == 1  # a zoo model has no model version to tag


def test_with_out_the_profile_is_kept_there_and_the_message_names_it(tmp_path):
    out = tmp_path / "mine.json"
    with pytest.raises(NotFiled, match=f"kept in {out}: file it with `ipa profiles push {out}`"):
        keep_and_file(Registry(down=True), profile(), out=out, home=tmp_path)
    assert ProfileSet.load([out]) and pending(tmp_path) == []


def test_push_stops_when_mlflow_goes_away_and_skips_unreadable_files(tmp_path):
    for _ in range(3):
        keep(profile(), home=tmp_path)
    broken = pending_dir(tmp_path) / "0-broken.json"
    broken.write_text("{not json")
    report = push(Registry(down=True), home=tmp_path)
    assert [f["file"] for f in report.failed] == [str(broken), str(pending(tmp_path)[1])]
    assert "not valid JSON" in report.failed[0]["error"] and len(report.left) == 2
    assert report.unreachable and len(pending(tmp_path)) == 4  # nothing lost

    report = push(Registry(), home=tmp_path)
    assert len(report.filed) == 3 and pending(tmp_path) == [broken]  # only the broken one waits


def test_the_next_profile_run_files_pending_ones_first_or_stops_before_measuring(tmp_path, monkeypatch):
    keep(profile(), home=tmp_path)
    said = []
    with pytest.raises(
        MlflowUnreachable, match=r"1 profile\(s\) measured earlier wait in .*`ipa profiles push`"
    ):
        push_pending(Registry(down=True), home=tmp_path, say=said.append)
    report = push_pending(Registry(), home=tmp_path, say=said.append)
    assert len(report.filed) == 1 and said == [
        f"filed 1 profile(s) measured earlier, from {pending_dir(tmp_path)}"
    ]


def test_a_profile_not_measured_by_ipa_profile_cannot_be_filed(tmp_path):
    path = keep(Profile("x", "h", "fp32", "cpu=1", profile().points), home=tmp_path)
    report = push(Registry(), home=tmp_path)
    assert "only profiles measured by `ipa profile` can be filed" in report.failed[0]["error"]
    assert pending(tmp_path) == [path]
    assert issubclass(NotFiled, RegistryError) and issubclass(RegistryError, ProfileError)  # cli: exit 2


def test_profiles_push_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IPA_HOME", str(tmp_path))
    assert main(["profiles", "push", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["filed"] == []
    keep(profile(), home=tmp_path)
    registry = Registry()
    monkeypatch.setattr("ipa_airflow.registry.registry_for", lambda uri: registry)
    assert main(["profiles", "push"]) == 0
    assert "filed tiny/ci-cpu/fp32/cpu=1 from" in capsys.readouterr().out and pending(tmp_path) == []
    registry.down = True
    missing = tmp_path / "nope.json"
    assert main(["profiles", "push", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"{missing} not filed" in err and "No such file or directory" in err


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys):
    missing = tmp_path / "no-such-folder" / "p.json"
    with pytest.raises(SystemExit) as exc:  # argparse checks --out before the command starts
        main(["profile", "--zoo", "resnet18", "--no-log", "--out", str(missing)])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err
    url = "http://127.0.0.1:9"  # never contacted: the destination is checked first
    with pytest.raises(SystemExit):
        main(["forecast", "export", "--prometheus", url, "--days", "1", "--out", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err


def test_only_unreadable_pending_files_still_ask_mlflow_before_measuring(tmp_path, monkeypatch):
    """A spool holding only a corrupt file never reached MLflow: without asking it now, `ipa profile`
    would measure for minutes and only then find MLflow down."""
    (pending_dir(tmp_path)).mkdir(parents=True)
    (pending_dir(tmp_path) / "cut.json").write_text('{"profiles": [')
    asked = []

    def down(uri):
        asked.append(uri)
        raise MlflowUnreachable(f"cannot reach MLflow at {uri}")

    monkeypatch.setattr("ipa_airflow.registry.mlflow_profiles.check_reachable", down)
    said = []
    with pytest.raises(MlflowUnreachable):
        push_pending(Registry(), home=tmp_path, say=said.append)
    assert asked == ["http://mlflow.test"] and "cut.json not filed" in said[0]


def test_ipa_profile_with_mlflow_down_stops_before_torch_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IPA_HOME", str(tmp_path))
    keep(profile(), home=tmp_path)
    monkeypatch.setattr("ipa_airflow.registry.registry_for", lambda uri: Registry(down=True))

    def no_torch(device):
        raise AssertionError("torch was loaded although MLflow is down")

    monkeypatch.setattr("ipa_airflow.profiling.torch_runner.resolve_device", no_torch)
    assert main(["profile", "--zoo", "resnet18", "--batch-sizes", "1"]) == 2
    err = capsys.readouterr().err
    assert "1 profile(s) measured earlier wait in" in err and "`ipa profiles push`" in err
