"""Converting the IPA authors' profiles and settings: on a small input whose answers are known, and the
five converted pipelines the project ships."""

import gzip
import json

import pytest

from ipa_airflow.cli import main
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.profiling import paper_reference as pr
from tests.conftest import PIPELINES

PAPER = PIPELINES / "paper"
QA_CORES = {"deepset-qa_Base": 1}


def _run(model, cpu, batch, load, p99=100.0, throughput=5.0, series=1):
    stats = {
        f"model_{k}_ms": v for k, v in (("p50", p99 / 2), ("p95", p99 * 0.9), ("p99", p99), ("mean", p99 / 2))
    }
    return {
        "series": series,
        "task": "n",
        "model": model,
        "cpu": cpu,
        "batch": batch,
        "load_rps": load,
        "experiment_id": cpu * 100 + batch * 10 + load,
        "load_duration_s": 60,
        "max_throughput_rps": throughput,
        **stats,
    }


def _ipa_run(series, policy, alpha, pattern="bursty"):
    return {
        "series": series,
        "pattern": pattern,
        "policy": policy,
        "in_paper_figures": True,
        "alpha": alpha,
        "beta": 0.5,
        "gamma": 1e-6,
        "adaptation_interval_s": 10,
        "scaling_cap": 50,
    }


def _stage(task, node, series, variants, load=20):
    return {
        "task_name": task,
        "node_name": node,
        "profiling_series": series,
        "profiling_load_rps": load,
        "accuracy_metric": "x",
        "profiled_batch_sizes": [1, 2, 8, 32],
        "variants": [
            {"model": m, "accuracy_pct": a, "profiled_in_series": True} for m, a in variants.items()
        ],
    }


@pytest.fixture
def paper_files(tmp_path):
    runs = [
        # the load the optimizer reads (20) and one it does not (10)
        *[
            _run("facebook-s2t-small", c, b, 20, p99=100.0 * b / c, series=1)
            for c in (1, 2)
            for b in (1, 2, 8)
        ],
        _run("facebook-s2t-small", 1, 1, 10, p99=999.0, series=1),
        *[_run("facebook-s2t-big", c, b, 20, p99=300.0 * b / c) for c in (1, 2) for b in (1, 2, 8)],
        *[_run("deepset-qa_Base", 1, b, 20, p99=50.0 * b, series=2) for b in (1, 2, 8)],
    ]
    # a run that recorded no completed request: left out, and said so
    broken = _run("deepset-qa_Base", 1, 32, 20, series=2)
    broken["model_p99_ms"] = None
    runs.append(broken)
    with gzip.open(tmp_path / "runs.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"series": {"1": {}, "2": {}}}) + "\n")
        fh.writelines(json.dumps(r) + "\n" for r in runs)
    pipeline = {
        "stage_order": ["audio", "qa"],
        "accuracy_method": ["multiply"],
        "normalize_accuracy_in_optimizer": [True],
        "batch_sizes": {"batching_cap": 8},
        "stages": [
            _stage("audio", "audio", 1, {"facebook-s2t-small": 58.72, "facebook-s2t-big": 66.74}),
            _stage("qa", "nlp-qa", 2, {"deepset-qa_Base": 77.1}),
        ],
        "runs": [
            _ipa_run(11, "IPA", 20, "bursty"),
            _ipa_run(12, "IPA", 10, "steady-low"),
            _ipa_run(13, "FA2-low", 10),
            _ipa_run(14, "FA2-low", 10),
        ],
        "sla_and_base_allocation": [
            {
                "series": [11, 12, 13],
                "threshold_rps": 1,
                "latency_margin_pct": 100,
                "throughput_margin_pct": -50,
                "profiling_load_rps": 20,
                "pipeline_sla_s": 18.4711,
                "base_cores": {
                    "audio": {"facebook-s2t-small": 1, "facebook-s2t-big": 2},
                    "qa": {"deepset-qa_Base": 1},
                },
            },
            {  # a group fewer of IPA's runs used: not the one encoded
                "series": [14],
                "threshold_rps": 2,
                "latency_margin_pct": 0,
                "throughput_margin_pct": 0,
                "profiling_load_rps": 20,
                "pipeline_sla_s": 99.0,
                "base_cores": {
                    "audio": {"facebook-s2t-small": 2, "facebook-s2t-big": 2},
                    "qa": {"deepset-qa_Base": 1},
                },
            },
        ],
        "baselines": {
            "FA2-low": {"pinned_variants": {"bursty": ["facebook-s2t-small", "deepset-qa_Base"]}},
            "FA2-high": {"pinned_variants": {"bursty": ["facebook-s2t-big", "deepset-qa_Base"]}},
            "RIM": {"per_pattern": {"bursty": {"replicas": [9, 3]}, "steady-low": {"replicas": [9, 3]}}},
        },
    }
    (tmp_path / "settings.json").write_text(json.dumps({"pipelines": {"tiny": pipeline}}))
    return tmp_path / "runs.jsonl.gz", tmp_path / "settings.json"


def test_the_conversion_encodes_the_authors_settings_and_keeps_the_measured_numbers(paper_files, tmp_path):
    runs_path, settings_path = paper_files
    [done] = pr.write_all(runs_path, settings_path, tmp_path / "prof", tmp_path / "specs")
    pipeline = load_pipeline(tmp_path / "specs" / "tiny.yaml")
    spec = pipeline.spec
    assert spec.name == "paper-tiny" and spec.sla_s == 18.471
    # -50 % throughput is a utilisation cap of 0.5; +100 % latency keeps half the SLA free.
    assert spec.limits.max_utilisation == 0.5 and spec.latency_budget_s == pytest.approx(18.471 / 2)
    assert spec.limits.batch_sizes == [1, 2, 8] and spec.limits.max_replicas == 50
    # IPA's runs tie 20 against 10: the one that weighs accuracy more; rank-normalised product.
    assert spec.objective.alpha == 20 and spec.objective.beta == 0.5 and spec.objective.rank_normalize
    audio = {v.name: v for v in spec.stages[0].variants}
    assert set(audio) == {"s2t-small", "s2t-big"}  # the organisation is dropped, the artifact name kept
    assert audio["s2t-big"].model == "facebook-s2t-big" and audio["s2t-big"].accuracy == 66.74
    assert [s.resources.cpu for s in audio["s2t-big"].shapes] == [2]  # the base cores of the main group
    assert spec.stages[1].variants[0].name == "qa-base"
    assert spec.baselines.fa2_high == {"audio": "s2t-big", "qa": "qa-base"}
    assert spec.baselines.rim_replicas == {"audio": 9, "qa": 3}
    # Profile points are the runs at the optimizer's load, never the other load's.
    prof = pipeline.profiles.profiles["facebook-s2t-small/xeon-gold-6126/fp32/cpu=1"]
    assert prof.latency_ms(1, "p99") == 100.0 and prof.throughput_rps(1) == 5.0
    assert prof.provenance["load_rps"] == 20 and prof.provenance["series"] == 1
    assert prof.task == "speech-recognition"
    assert "facebook-s2t-small/xeon-gold-6126/fp32/cpu=2" in pipeline.profiles.profiles  # every core count
    qa = pipeline.profiles.profiles["deepset-qa_Base/xeon-gold-6126/fp32/cpu=1"]
    assert qa.measured_batches == [1, 2, 8] and qa.provenance["batches_without_measure"] == [32]
    assert done.skipped == ("series 2 deepset-qa_Base cpu=1 batch=32 at 20 req/s: no latency",)


def test_inputs_that_do_not_belong_together_are_refused_before_anything_is_written(paper_files, tmp_path):
    runs_path, settings_path = paper_files
    settings = json.loads(settings_path.read_text())
    settings["pipelines"]["tiny"]["sla_and_base_allocation"][0]["base_cores"]["audio"]["facebook-s2t-big"] = 8
    settings_path.write_text(json.dumps(settings))
    with pytest.raises(pr.PaperDataError, match="tiny/audio/facebook-s2t-big: no profiled run at 8 cores"):
        pr.write_all(runs_path, settings_path, tmp_path / "prof", tmp_path / "specs")
    assert not (tmp_path / "prof").exists() and not (tmp_path / "specs").exists()


def test_the_command_names_the_file_that_is_not_the_authors_data(paper_files, tmp_path, capsys):
    runs_path, settings_path = paper_files
    (tmp_path / "other.jsonl").write_text('{"model": "x"}\n')
    out = ["--profiles-out", str(tmp_path / "p"), "--specs-out", str(tmp_path / "s")]
    assert main(["profiles", "import-paper", str(tmp_path / "other.jsonl"), str(settings_path), *out]) == 2
    assert "other.jsonl is not the IPA authors' profiling runs" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"pipelines": {"tiny": {"stages": []}}}')
    assert main(["profiles", "import-paper", str(runs_path), str(tmp_path / "bad.json"), *out]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "pipeline 'tiny' lacks or mistypes a field" in err and "Traceback" not in err
    assert main(["profiles", "import-paper", str(runs_path), str(settings_path), *out, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["pipeline"] == "paper-tiny" and row["profiles"] == 5 and len(row["runs_without_latency"]) == 1


# The SLAs the authors' runs logged (shared/data/README.md), which IPA's rule reproduces.
LOGGED_SLA_S = {"video": 4.598, "audio-qa": 18.471, "audio-sent": 20.265, "sum-qa": 3.852, "nlp": 11.746}


@pytest.mark.parametrize("name", sorted(LOGGED_SLA_S))
def test_the_shipped_paper_pipelines_load_with_the_logged_sla_and_plan(name):
    from ipa_airflow.optimizer import plan as make_plan

    pipeline = load_pipeline(PAPER / f"{name}.yaml")
    assert pipeline.spec.sla_s == LOGGED_SLA_S[name]
    for stage in pipeline.spec.stages:
        for variant in stage.variants:
            [shape] = variant.shapes  # IPA's base allocation: one core count per variant
            prof = pipeline.profiles.get(variant.profile_id(shape))
            assert prof.provenance["measured_by"].startswith("the IPA authors")
    plan = make_plan(pipeline.spec, pipeline.profiles, 5.0)
    assert plan.feasible and plan.cost >= len(pipeline.spec.stages)


SHARED = PIPELINES.parents[2] / "shared" / "data"


@pytest.mark.skipif(
    not (SHARED / "ipa_paper_profiles.jsonl.gz").exists(), reason="the authors' data is not here"
)
def test_the_shipped_files_are_what_the_conversion_writes_today(tmp_path):
    """Where the authors' data lies beside the checkout, converting it again gives the committed files."""
    profiles, specs = tmp_path / "profiles" / "ipa_paper", tmp_path / "profiles" / "pipelines" / "paper"
    pr.write_all(SHARED / "ipa_paper_profiles.jsonl.gz", SHARED / "ipa_paper_pipelines.json", profiles, specs)
    for name in LOGGED_SLA_S:
        assert (specs / f"{name}.yaml").read_text() == (PAPER / f"{name}.yaml").read_text()
        assert (profiles / f"{name}.json").read_text() == (
            PIPELINES.parent / "ipa_paper" / f"{name}.json"
        ).read_text()


def test_the_weights_come_from_ipas_runs_in_the_group_whose_base_cores_are_used(paper_files, tmp_path):
    """Two groups with as many IPA runs each: the one more runs used is encoded, and its IPA runs' weights
    with it, never the other group's (nlp's runs split this way)."""
    runs_path, settings_path = paper_files
    settings = json.loads(settings_path.read_text())
    tiny = settings["pipelines"]["tiny"]
    tiny["runs"] = [
        _ipa_run(11, "IPA", 100),  # group 1: two IPA runs weighing accuracy at 100
        _ipa_run(12, "IPA", 100),
        _ipa_run(14, "IPA", 40),  # group 2: two at 40, and more runs in all
        _ipa_run(15, "IPA", 40),
        _ipa_run(16, "FA2-low", 40),
    ]
    tiny["sla_and_base_allocation"][0]["series"] = [11, 12]
    tiny["sla_and_base_allocation"][1]["series"] = [14, 15, 16]
    settings_path.write_text(json.dumps(settings))
    [done] = pr.write_all(runs_path, settings_path, tmp_path / "prof", tmp_path / "specs")
    assert done.spec["objective"]["alpha"] == 40 and done.spec["sla_s"] == 99.0
    assert done.spec["limits"]["max_utilisation"] == 1.0  # group 2's margins, too


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t["sla_and_base_allocation"][0].update(throughput_margin_pct=-100),
            "throughput_margin_pct",
        ),
        (lambda t: t["sla_and_base_allocation"][0].update(pipeline_sla_s="soon"), "lacks or mistypes"),
        (lambda t: t["sla_and_base_allocation"][0].pop("threshold_rps"), "lacks or mistypes a field"),
        (lambda t: t.update(runs=[]), "no IPA run in the base-allocation group"),
    ],
)
def test_a_bad_settings_file_is_named_and_nothing_is_written(paper_files, tmp_path, change, message):
    runs_path, settings_path = paper_files
    settings = json.loads(settings_path.read_text())
    settings["pipelines"]["second"] = json.loads(json.dumps(settings["pipelines"]["tiny"]))
    change(settings["pipelines"]["second"])  # the first pipeline converts; the second fails
    settings_path.write_text(json.dumps(settings))
    with pytest.raises(pr.PaperDataError, match=message) as info:
        pr.write_all(runs_path, settings_path, tmp_path / "prof", tmp_path / "specs")
    assert str(settings_path) in str(info.value)
    assert not (tmp_path / "prof").exists() and not (tmp_path / "specs").exists()
    settings_path.write_text(json.dumps({"pipelines": {}}))
    with pytest.raises(pr.PaperDataError, match="names no pipeline"):
        pr.write_all(runs_path, settings_path, tmp_path / "prof", tmp_path / "specs")
