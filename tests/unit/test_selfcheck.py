"""`ipa selfcheck`: the whole bad-input corpus, and the runner's classification on tiny synthetic cases."""

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from ipa_airflow import cli
from ipa_airflow.cli import main
from ipa_airflow.selfcheck import FAILURES, Case, CorpusError, load_cases, run_cases, select
from tests.conftest import PIPELINES

GOOD_SPEC = str(PIPELINES / "video-cpu.yaml")


def test_the_whole_corpus_ends_in_clear_errors_with_no_traceback_silent_hang_or_unclear_case(capsys):
    """The issue's figure: every bad input of every domain (spec, profile, plan, trace, CLI, Prometheus,
    webhook) refused clearly, every good one accepted."""
    rc = main(["selfcheck", "--json"])
    report = json.loads(capsys.readouterr().out)
    findings = [
        f"{r['id']} ({r['source']}): {r['outcome']}: {r['message']}"
        for r in report["rows"]
        if r["outcome"] in FAILURES
    ]
    assert findings == [], "\n".join(findings)
    assert rc == 0
    assert report["cases"] == len(load_cases()) and report["counts"]["clear-error"] > 0


def case(**kw) -> Case:
    return Case.of({"id": "t", "about": "a test case", "expect": "error", "match": "x", **kw})


def run_one(c: Case, **kw):
    (row,) = run_cases([c], **kw).rows
    return row


# ---- classification of the cli kind ------------------------------------------------------------------
def test_a_bad_input_refused_with_the_matching_message_is_a_clear_error():
    row = run_one(case(argv=["plan", GOOD_SPEC, "--load", "nan"], match="--load.*at least 0"))
    assert row.outcome == "clear-error" and "argument --load" in row.message


def test_a_bad_input_that_exits_0_is_silent():
    row = run_one(case(argv=["validate", GOOD_SPEC], match="sla_s"))
    assert row.outcome == "silent" and row.message.startswith("exit 0")


def test_an_error_that_does_not_say_what_is_wrong_is_unclear_not_clear():
    row = run_one(case(argv=["plan", GOOD_SPEC, "--load", "nan"], match="sla_s"))
    assert row.outcome == "unclear" and "/sla_s/" in row.message


def test_a_good_input_refused_is_a_finding():
    row = run_one(case(argv=["plan", "nosuch.yaml", "--load", "1"], expect="ok"))
    assert row.outcome == "refused" and "refused" in FAILURES


def test_a_good_input_that_works_is_ok_and_its_output_stays_out_of_the_report(capsys):
    row = run_one(case(argv=["plan", GOOD_SPEC, "--load", "1", "--json"], expect="ok", match='"feasible"'))
    assert row.outcome == "ok"
    assert capsys.readouterr() == ("", "")  # the plan's JSON went to the case's buffer, not to stdout


def test_an_internal_error_in_a_command_is_a_traceback(monkeypatch):
    def crash(args):
        raise TypeError("'NoneType' object has no attribute 'data'")

    monkeypatch.setattr(cli.planning, "cmd_validate", crash)
    row = run_one(case(argv=["validate", GOOD_SPEC], match="error"))  # 'error:' is printed, yet a bug
    assert row.outcome == "traceback" and "exit 3" in row.message and "TypeError" in row.message


# ---- what the framework decides ----------------------------------------------------------------------
def test_an_exception_escaping_the_runner_is_a_traceback_naming_it():
    def runner(c, workdir):
        raise KeyError("boom")

    row = run_one(case(kind="boom"), runners={"boom": runner})
    assert row.outcome == "traceback"
    assert row.message.startswith("KeyError: 'boom'") and "test_selfcheck.py" in row.message


def test_a_runner_answering_no_outcome_is_a_traceback():
    row = run_one(case(kind="odd"), runners={"odd": lambda c, w: ("fine", "")})
    assert row.outcome == "traceback" and "not (outcome, message)" in row.message


def test_a_case_that_does_not_finish_is_a_hang_and_later_cases_still_run(capsys):
    release, finished = threading.Event(), threading.Event()

    def stuck(c, workdir):
        release.wait()
        print("late output of the hung case")
        finished.set()
        return "ok", ""

    def quick(c, workdir):
        return "clear-error", "refused"

    rows = run_cases(
        [case(id="stuck", kind="stuck", timeout_s=0.05), case(id="next", kind="quick")],
        runners={"stuck": stuck, "quick": quick},
    ).rows
    try:
        assert [r.outcome for r in rows] == ["hang", "clear-error"]
        assert "cannot be stopped" in rows[0].message
    finally:
        release.set()
        assert finished.wait(10)
        for t in threading.enumerate():
            if t.name == "selfcheck-stuck":
                t.join(10)
    assert "late output" not in capsys.readouterr().out  # went to the hung case's own buffer


def test_each_case_runs_in_its_own_folder_with_its_files_and_an_isolated_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://someones-real-mlflow:5000")
    before = (os.getcwd(), os.environ.get("IPA_HOME"))
    seen = {}

    def look(c, workdir):
        seen.update(
            cwd=os.getcwd(),
            workdir=workdir,
            home=os.environ["IPA_HOME"],
            mlflow=os.environ.get("MLFLOW_TRACKING_URI"),
            extra=os.environ.get("IPA_SELFCHECK_TEST"),
            files=sorted(p.name for p in workdir.iterdir()),
            text=(workdir / "a" / "b.txt").read_text(),
            repo=c["argv_like"],
        )
        return "ok", ""

    c = case(
        kind="look",
        expect="ok",
        files={"a/b.txt": "{repo}/x", "empty": {"dir": True}, "t.gz": {"gzip": "1\n"}},
        env={"IPA_SELFCHECK_TEST": "1"},
        argv_like=["{repo}"],
    )
    assert run_one(c, runners={"look": look}).outcome == "ok"
    repo = str(Path(cli.__file__).resolve().parents[2])
    assert Path(seen["cwd"]).resolve() == Path(seen["workdir"]).resolve()
    assert seen["home"].startswith(str(seen["workdir"])) and seen["mlflow"] is None
    assert seen["extra"] == "1" and seen["files"] == ["a", "empty", "t.gz"]
    assert seen["text"] == f"{repo}/x" and seen["repo"] == [repo]
    assert (os.getcwd(), os.environ.get("IPA_HOME")) == before
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://someones-real-mlflow:5000"
    assert not Path(seen["workdir"]).exists()


# ---- the corpus itself ---------------------------------------------------------------------------------
def test_a_bad_corpus_is_refused_naming_every_problem_with_its_file_and_case():
    text = (
        "- {id: dup, about: a, argv: [plan], expect: error, match: x}\n"
        "- {id: dup, about: b, argv: [plan], expect: error, match: x}\n"
        "- {id: Bad_Id, about: c, argv: [plan], expect: maybe}\n"
        "- {id: no-match, about: d, argv: [plan], expect: error}\n"
        "- {id: no-kind, about: e, kind: nosuch, expect: ok}\n"
        "- {id: escape, about: f, argv: [x], expect: ok, files: {../up.txt: hi}}\n"
    )
    with pytest.raises(CorpusError) as err:
        load_cases([("cases/t.yaml", text)])
    where = {w for w, _ in err.value.problems}
    assert "cases/t.yaml[1] (dup)" in where  # the second of two equal ids
    assert {"cases/t.yaml[2] (Bad_Id).id", "cases/t.yaml[2] (Bad_Id).expect"} <= where
    assert "cases/t.yaml[3] (no-match).match" in where
    assert "cases/t.yaml[4] (no-kind).kind" in where
    assert "cases/t.yaml[5] (escape).files['../up.txt']" in where


def test_a_case_file_with_a_repeated_key_is_refused():
    with pytest.raises(CorpusError, match="cases/t.yaml"):
        load_cases([("cases/t.yaml", "- {id: a, id: b, about: x, argv: [plan], expect: ok}\n")])


def test_cases_are_chosen_by_id_or_by_a_regular_expression():
    cases = [case(id="cli-a"), case(id="cli-ab"), case(id="spec-b")]
    assert [c.id for c in select(cases, "cli-a")] == ["cli-a"]
    assert [c.id for c in select(cases, "^cli-")] == ["cli-a", "cli-ab"]
    with pytest.raises(ValueError, match="no case id matches 'nope'"):
        select(cases, "nope")


def test_selfcheck_exits_1_and_shows_each_finding(monkeypatch, capsys):
    import ipa_airflow.selfcheck as sc

    synthetic = [
        case(id="good-refusal", argv=["plan", GOOD_SPEC, "--load", "nan"], match="--load"),
        case(id="accepted-bad", argv=["validate", GOOD_SPEC], match="nothing"),
    ]
    monkeypatch.setattr(sc, "load_cases", lambda: synthetic)
    assert main(["selfcheck"]) == 1
    out = capsys.readouterr().out
    assert "accepted-bad" in out and "silent" in out and "good-refusal" not in out.split("findings")[1]
    assert main(["selfcheck", "--case", "good-refusal", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["clear-error"] == 1


# ---- the prometheus and webhook kinds ------------------------------------------------------------------
EMPTY_ANSWER = '{"status": "success", "data": {"resultType": "matrix", "result": []}}'


def test_an_empty_prometheus_answer_read_as_zero_load_is_silent(monkeypatch):
    from ipa_airflow.forecasting.sources import PrometheusSource

    row = run_one(case(kind="prometheus", answer=EMPTY_ANSWER, match="no sample"))
    assert row.outcome == "clear-error" and row.message.startswith("fallback: last good forecast")
    monkeypatch.setattr(PrometheusSource, "rates", lambda self, *, end, window_s: np.zeros(window_s))
    row = run_one(case(kind="prometheus", answer=EMPTY_ANSWER, match="no sample"))
    assert row.outcome == "silent" and row.message.startswith("forecast 0 req/s")


SIGNED_EVENT = '{"entity": "model_version", "action": "created", "data": {"name": "m", "version": "3"}}'


def test_a_replay_the_receiver_acts_on_twice_is_silent(monkeypatch):
    from ipa_airflow.webhooks import ReplayGuard

    replay = {"kind": "webhook", "body": SIGNED_EVENT, "sign": True, "repeat": 2}
    row = run_one(case(**replay, expect_status=[200, 409], expect_events=1, match="a replay"))
    assert row.outcome == "clear-error"
    monkeypatch.setattr(ReplayGuard, "claim", lambda self, delivery_id, *, sent, now: None)
    row = run_one(case(**replay, expect_status=[200, 409], expect_events=1, match="a replay"))
    assert row.outcome == "silent" and "expected statuses [200, 409], got [200, 200]" in row.message
    # Answered 2xx as expected, but one more profiling run than the case allows: still silent.
    row = run_one(case(**replay, expect="ok", expect_status=200, expect_events=1))
    assert row.outcome == "silent" and "2 asset event(s) (profiling runs) where 1 expected" in row.message


def test_expect_events_is_zero_when_every_post_is_refused_and_is_checked_in_the_corpus():
    row = run_one(case(kind="webhook", body=SIGNED_EVENT, expect_status=401, match="missing"))
    assert row.outcome == "clear-error" and "asset events 0" in row.message
    bad = "- {id: w, about: w, kind: webhook, expect: error, match: x, expect_status: 401, expect_events: -1}"
    with pytest.raises(CorpusError, match=r"t\.yaml\[0\] \(w\)\.expect_events: a whole number from 0"):
        load_cases([("t.yaml", bad)])
