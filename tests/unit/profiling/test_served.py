"""Served profiling's pure parts: reading MLServer's /metrics, the rounds of a closed loop, the cores, the
profile it makes (filed beside the in-process one, never in its place) and the served/in-process ratios.
The real server is driven in tests/integration/test_served_profiling.py."""

import json

import pytest

from ipa_airflow.cli import main
from ipa_airflow.profiles import BatchPoint, Profile, ProfileError, ProfileSet
from ipa_airflow.profiling.filing import file_profile, keep, key_of
from ipa_airflow.profiling.served import (
    SERVED_TAG_PREFIX,
    Rounds,
    ServedCell,
    ServerCounters,
    check_served_args,
    compare_served,
    metric_value,
    profile_method,
    run_rounds,
    served_profile,
    served_vs_inprocess,
    split_cores,
)
from ipa_airflow.profiling.timing import TimingSettings

# As MLServer 1.7.1 exposes them (trimmed from a real server's /metrics): a second model shows that only
# the profiled model's samples are read.
METRICS = """\
# HELP parallel_request_queue counter of request queue size for workers
# TYPE parallel_request_queue histogram
parallel_request_queue_sum 13.0
parallel_request_queue_bucket{le="0.005"} 0.0
parallel_request_queue_count 13.0
rest_server_requests_total{method="POST",path="/v2/models/{model_name}/infer",status_code="200"} 41.0
batch_request_queue_count{model_name="classify",model_version=""} 41.0
model_infer_request_duration_count{model="classify",version="None"} 41.0
model_infer_request_duration_sum{model="classify",version="None"} 1.0184952039999189
model_infer_request_duration_count{model="other",version="None"} 7.0
model_infer_request_duration_sum{model="other",version="None"} 9.5
model_infer_request_success_total{model="classify",version="None"} 41.0
model_infer_request_success_total{model="other",version="None"} 7.0
"""


def test_the_servers_counters_are_read_for_the_profiled_model_only():
    assert metric_value(METRICS, "parallel_request_queue_count") == 13.0
    assert metric_value(METRICS, "model_infer_request_success_total") == 48.0  # both models
    assert metric_value(METRICS, "model_infer_request_success_total", model="classify") == 41.0
    assert metric_value(METRICS, "no_such_metric") == 0.0
    assert metric_value(METRICS, "rest_server_requests_total", path="/v2/models/{model_name}/infer") == 41
    before = ServerCounters.read(METRICS, "classify")
    assert before == ServerCounters(requests=41.0, seconds=1.0184952039999189, timed=41.0, batches=13.0)
    after = ServerCounters(requests=81.0, seconds=2.0184952039999189, timed=81.0, batches=23.0)
    delta = after - before
    assert delta.mean_batch == pytest.approx(4.0) and delta.mean_ms == pytest.approx(25.0)
    assert ServerCounters().mean_ms is None and ServerCounters().mean_batch is None


def test_the_server_gets_the_last_cores_and_the_client_the_others():
    assert split_cores(1, {0, 1}) == ((1,), (0,))
    assert split_cores(2, [3, 1, 2, 0]) == ((2, 3), (0, 1))
    assert split_cores(2, {0, 1}) == ((0, 1), (0, 1))  # nothing left: the client shares
    with pytest.raises(ValueError, match=r"--threads 3 asks for 3 cores.*use 2 \(0,1\); give --threads 2"):
        split_cores(3, {0, 1})


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_rounds_warm_up_until_settled_then_time_as_the_in_process_sweep_does():
    clock = FakeClock()
    durations = iter([0.5, 0.25] + [0.125] * 1000)  # the warm-up settles at the 5th round
    events = []

    def one_round():
        clock.t += next(durations)
        events.append("round")
        return [10.0, 12.0]  # two requests a round

    settings = TimingSettings(min_warmup=3, settle_cv=0.1, min_iters=4, min_seconds=1.0, max_iters=100)
    rounds = run_rounds(one_round, settings, clock=clock, after_warmup=lambda: events.append("counters"))
    assert rounds.warmup == 5 and events.index("counters") == 5 and events.count("counters") == 1
    assert rounds.rounds == 8  # min_iters reached at 4, min_seconds (1 s of 0.125 s rounds) at 8
    assert rounds.latencies_ms == (10.0, 12.0) * 8 and rounds.seconds == 1.0


def test_rounds_stop_at_max_seconds_once_five_are_in():
    clock = FakeClock()

    def one_round():
        clock.t += 2.0
        return [2000.0]

    settings = TimingSettings(min_warmup=2, max_warmup=2, min_iters=20, max_seconds=5.0)
    rounds = run_rounds(one_round, settings, clock=clock)
    assert (rounds.warmup, rounds.rounds) == (2, 5)


def cell(batch, latencies, *, requests, batches, seconds=1.0):
    rounds = Rounds(2, tuple(latencies), len(latencies) // batch, seconds)
    server = ServerCounters(requests, requests * 0.02, requests, batches)
    return ServedCell(batch, rounds, server, ready_s=9.5, peak_memory_mb=1100.0)


def test_a_batch_mlserver_did_not_fill_is_warned_about():
    full = cell(4, [50.0] * 40, requests=40, batches=10)
    short = cell(4, [50.0] * 40, requests=40, batches=20)
    assert full.warning() is None and cell(1, [20.0] * 10, requests=10, batches=10).warning() is None
    assert "batches of 2.00 requests on average, not 4" in short.warning()
    assert "raise --batch-time" in short.warning()
    assert full.throughput_rps == 40.0 and full.point().p50_ms == 50.0


def served(points=(1, 2, 4), lat=lambda b: 30.0 + 10 * b, model="mnv3s"):
    cells = [cell(b, [lat(b)] * (8 * b), requests=8 * b, batches=8, seconds=0.5) for b in points]
    env = {"torch": "2.14.1+cu130", "mlserver": "1.7.1", "device": "cpu", "threads": 1, "dtype": "fp32"}
    return served_profile(
        cells,
        model=model,
        model_ref=f"models:/{model}/1",
        hardware="amd-epyc",
        threads=1,
        environment=env,
        batch_time_s=0.05,
        server_cores=(1,),
        client_cores=(0,),
        input_desc="V2 JSON, one row of [3, 64, 64] FP32 per request",
    )


def inprocess(model="mnv3s", batches=(1, 2, 4, 8)):
    points = tuple(BatchPoint(b, 10.0 * b, 11.0 * b, 12.0 * b, 10.5 * b, 100.0 / b) for b in batches)
    env = {"torch": "2.14.1+cu130", "device": "cpu", "threads": 1}
    prov = {"model_ref": f"models:/{model}/1", "environment": env, "method": "eval + inference_mode; ..."}
    return Profile(model, "amd-epyc", "fp32", "cpu=1", points, provenance=prov)


def test_a_served_profile_is_an_ordinary_profile_with_its_serving_in_the_provenance():
    p = served()
    again = ProfileSet.from_dict(ProfileSet({p.id: p}).to_dict()).get(p.id)  # a valid profile file
    assert again == p and profile_method(p) == "served" and profile_method(inprocess()) == "in-process"
    assert p.id == "mnv3s/amd-epyc/fp32/cpu=1/served" and inprocess().id == "mnv3s/amd-epyc/fp32/cpu=1"
    both = ProfileSet({p.id: p, inprocess().id: inprocess()})  # side by side in one file
    assert len(ProfileSet.from_dict(both.to_dict())) == 2
    assert p.provenance["server"]["batch_time_s"] == 0.05 and p.provenance["server"]["cores"] == [1]
    assert p.provenance["server"]["mean_batch"] == {"1": 1.0, "2": 2.0, "4": 4.0}
    assert [pt.throughput_rps for pt in p.points] == [16.0, 32.0, 64.0]
    # filed under a runtime of its own: a reader checking the runtime never takes it for the in-process one
    assert key_of(p).runtime == "mlserver==1.7.1,torch==2.14.1"
    assert key_of(inprocess()).runtime == "torch==2.14.1"


def test_served_versus_in_process_ratios_per_batch():
    rows = served_vs_inprocess(served(), inprocess())
    assert [r["batch"] for r in rows] == [1, 2, 4]  # batch 8 was not served
    first = rows[0]
    assert (first["served_p50_ms"], first["in_process_p50_ms"], first["p50_ratio"]) == (40.0, 10.0, 4.0)
    assert first["p99_ratio"] == pytest.approx(40.0 / 12.0, abs=1e-3)
    assert first["throughput_ratio"] == pytest.approx(16.0 / 100.0)


def test_compare_pairs_by_model_and_refuses_the_wrong_kind():
    report = compare_served(
        ProfileSet({"a": served(), "b": served(model="r18")}), ProfileSet({"c": inprocess()})
    )
    assert report["matched_cells"] == 3 and {r["model"] for r in report["rows"]} == {"mnv3s"}
    assert report["median_p50_ratio"] == 2.5  # 40/10, 50/20, 70/40
    with pytest.raises(ProfileError, match=r"these are the other kind: mnv3s/amd-epyc/fp32/cpu=1 \(in the "):
        compare_served(ProfileSet({"a": inprocess()}), ProfileSet({"c": inprocess()}))


class Client:
    def __init__(self, calls):
        self.calls = calls

    def set_tag(self, run_id, key, value):
        self.calls.append(("run tag", run_id, key, value))

    def set_model_version_tag(self, name, version, key, value):
        self.calls.append(("version tag", name, version, key, value))


class Registry:
    """Records what is filed, as MlflowProfileRegistry's calls would write it."""

    tracking_uri = "http://mlflow.test"

    def __init__(self):
        self.calls = []
        self.client = Client(self.calls)

    def _call(self, what, fn, *args):
        return fn(*args)

    def log_profile(self, p, key, *, params=None):
        self.calls.append(("run", p.id, key.runtime, params))
        return "run-1"

    def tag_model_version(self, name, version, p, key, run_id):
        self.calls.append(("in-process version tags", name, version))


def test_a_served_profile_is_filed_beside_the_in_process_one_not_in_its_place():
    registry = Registry()
    assert file_profile(registry, served()) == "run-1"
    run, tag, *version_tags = registry.calls
    assert run[2] == "mlserver==1.7.1,torch==2.14.1" and run[3]["method"] == "served"
    assert tag == ("run tag", "run-1", "ipa.profile.method", "served")
    keys = {t[3] for t in version_tags}
    assert all(t[:3] == ("version tag", "mnv3s", "1") for t in version_tags)
    prefix = f"{SERVED_TAG_PREFIX}.amd-epyc.cpu1.fp32"
    assert keys == {f"{prefix}.{k}" for k in ("b1_p99_ms", "best_throughput_rps", "run_id", "runtime")}
    assert not any(k.startswith("ipa.profile.") for k in keys)  # the in-process summary stays as it is

    registry = Registry()
    file_profile(registry, inprocess())
    assert registry.calls[0][3]["method"] == "in-process"
    assert registry.calls[1] == ("in-process version tags", "mnv3s", "1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zoo", "resnet18", "--served"], "give --model-uri models:/NAME/VERSION"),
        (["--model-uri", "models:/m/1", "--served", "--device", "cuda"], "drop --device cuda"),
        (["--model-uri", "models:/m/1", "--served", "--dtype", "bf16"], "drop --dtype bf16"),
        (["--model-uri", "models:/m/1", "--batch-time", "0.1"], "--batch-time is the model server's"),
    ],
)
def test_what_a_served_profile_cannot_be_is_refused_before_any_work(args, message, capsys, tmp_path):
    assert main(["profile", *args, "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "none.db").exists()  # nothing was asked of MLflow


def test_check_served_args_accepts_a_registered_version_on_cpu():
    check_served_args(zoo=None, device="auto", dtype="fp32")
    check_served_args(zoo=None, device="cpu", dtype="fp32")


def test_profiles_compare_served_on_the_command_line(tmp_path, capsys):
    s, i = keep(served(), out=tmp_path / "served.json"), keep(inprocess(), out=tmp_path / "inproc.json")
    assert main(["profiles", "compare", str(s), "--reference", str(i), "--served", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["p50_ratio"] for r in report["rows"]] == [4.0, 2.5, 1.75]
    assert main(["profiles", "compare", str(s), "--reference", str(i), "--served"]) == 0
    out = capsys.readouterr().out
    assert "served / in-process" in out and "median ratios p50 2.5" in out
    assert main(["profiles", "compare", str(i), "--reference", str(s), "--served"]) == 2
    assert "the other kind" in capsys.readouterr().err
