"""Each stage's p99 from the real Prometheus, holding MLServer's REST latency histogram as the model servers
export it, and drift's re-profiling event read by the profiling DAG's own task."""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from ipa_airflow.control.drift import assess, reprofile_events
from ipa_airflow.forecasting.sources import LoadSourceError
from ipa_airflow.forecasting.stage_latency import MLSERVER_BUCKETS_MS, stage_p99_ms
from ipa_airflow.optimizer import plan as solve
from ipa_airflow.pipelines import load_pipeline
from ipa_airflow.plans import StagePlan
from tests.conftest import PIPELINES, REPO
from tests.integration.conftest import free_port, running_prometheus

pytestmark = pytest.mark.slow
METRIC = "rest_server_request_duration_seconds"  # MLServer 1.6: starlette_exporter, prefix 'rest_server'
BUCKETS_S = [b / 1000 for b in MLSERVER_BUCKETS_MS]
SPAN_S, STEP_S = 600, 5  # ten minutes of samples, one every 5 s
AT = 500  # seconds into the span the tests read at
# Requests per second by bucket upper bound (s), per series:
#   detect's infers: 90 in (0.05, 0.075], 10 in (0.1, 0.25]  -> p99 = 0.1 + 0.15 * (99 - 90) / 10 = 0.235 s
#   classify's infers (grouped path): 100 in (0.5, 0.75]       -> p99 = 0.5 + 0.25 * 0.99 = 0.7475 s
#   detect's readiness probes: slow, and not inference         -> must not count
#   another pipeline's detect: slow                            -> must not count
SERIES = [
    ({"pipeline": "video-cpu", "stage": "detect", "method": "POST", "path": "/v2/models/detect/infer"},
     {0.075: 90, 0.25: 10}),
    ({"pipeline": "video-cpu", "stage": "classify", "method": "POST",
      "path": "/v2/models/{model_name}/infer"}, {0.75: 100}),
    ({"pipeline": "video-cpu", "stage": "detect", "method": "GET", "path": "/v2/models/detect/ready"},
     {7.5: 50}),
    ({"pipeline": "other", "stage": "detect", "method": "POST", "path": "/v2/models/detect/infer"},
     {10.0: 100}),
    ({"pipeline": "video-cpu", "stage": "track", "method": "POST", "path": "/v2/models/track/infer"},
     {}),  # exported, but no request in the window: rate 0, the quantile NaN
]  # fmt: skip


def _openmetrics(start: int) -> str:
    """The histograms as MLServer's /metrics shows them, every STEP_S seconds (cumulative counts)."""
    lines = [f"# TYPE {METRIC} histogram"]
    for labels, per_s in SERIES:
        base = ",".join(
            f'{k}="{v}"' for k, v in {**labels, "status_code": "200", "app_name": "mlserver"}.items()
        )
        for t in range(0, SPAN_S + 1, STEP_S):
            for le in [*BUCKETS_S, math.inf]:
                count = sum(n for ub, n in per_s.items() if ub <= le) * t
                bound = "+Inf" if le == math.inf else f"{le:g}"
                lines.append(f'{METRIC}_bucket{{{base},le="{bound}"}} {count} {start + t}')
            total = sum(per_s.values()) * t
            lines.append(f"{METRIC}_count{{{base}}} {total} {start + t}")
            lines.append(f"{METRIC}_sum{{{base}}} {sum(ub * n for ub, n in per_s.items()) * t} {start + t}")
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def latency_prometheus(tmp_path_factory):
    """The real Prometheus holding ten minutes of the histograms a day ago, backfilled with promtool (a
    scraper would need real minutes to collect them)."""
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if binary is None or promtool is None:
        pytest.skip("prometheus is not installed (make test installs Debian's package when run as root)")
    start = (int(time.time()) - 86_400) // 60 * 60
    root = tmp_path_factory.mktemp("prometheus-latency")
    (root / "latency.om").write_text(_openmetrics(start))
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "latency.om"), str(root / "data")],
        check=True,
        capture_output=True,
    )
    with running_prometheus(binary, root, "global: {scrape_interval: 1s}\nscrape_configs: []\n") as url:
        yield url, start + AT


def _read(url, at, stages=("detect", "classify", "track", "missing"), **kw):
    return stage_p99_ms(
        url, pipeline="video-cpu", namespace="ipa", stages=list(stages), window_s=60, at=at, **kw
    )


def test_each_stages_p99_is_read_from_its_infer_histogram(latency_prometheus):
    url, at = latency_prometheus
    got = _read(url, at)
    # within the bucket the true p99 is in, at the point histogram_quantile interpolates to
    assert 100 < got["detect"] <= 250 and got["detect"] == pytest.approx(235.0)
    assert 500 < got["classify"] <= 750 and got["classify"] == pytest.approx(747.5)
    assert got["track"] is None  # no requests in the window
    assert got["missing"] is None  # no such series


def test_a_bad_query_and_an_unreachable_prometheus_are_clear_errors(latency_prometheus):
    url, at = latency_prometheus
    with pytest.raises(LoadSourceError, match="answered 400"):
        _read(url, at, query_template="histogram_quantile(0.99, sum(rate(")
    with pytest.raises(LoadSourceError, match="returned 2 series; aggregate it"):
        _read(
            url, at, query_template=f'sum by (path) (rate({METRIC}_count{{stage="{{stage}}"}}[{{window}}]))'
        )
    with pytest.raises(LoadSourceError, match="cannot reach Prometheus"):
        _read(f"http://127.0.0.1:{free_port()}", at, timeout_s=2)


def _profiling_dag_task():
    """The profiling DAG's own `versions_to_profile` callable."""
    spec = importlib.util.spec_from_file_location(
        "_profile_dag", REPO / "dags" / "ipa_profile_model_version.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag.get_task("versions_to_profile").python_callable


def test_a_drifting_version_is_re_profiled_by_the_profiling_dag(latency_prometheus):
    """video-cpu runs frcnn-mnv3-320 (153 ms predicted) and resnet18 as a registered version (56 ms
    predicted). Observed: 235 ms, the same histogram bucket as 153 ms, so no gap; and 747.5 ms, in
    (500, 750]: a gap of at least +787%, an event the profiling DAG turns into that version."""
    url, at = latency_prometheus
    cpu = load_pipeline(PIPELINES / "video-cpu.yaml")
    stages = []
    for st in cpu.spec.stages:
        variants = [
            v.model_copy(update={"model_uri": "models:/video-classifier/3"}) if v.name == "resnet18" else v
            for v in st.variants
        ]
        stages.append(st.model_copy(update={"variants": variants}))
    pipeline = replace(cpu, spec=cpu.spec.model_copy(update={"stages": stages}))
    running = (
        StagePlan("detect", "frcnn-mnv3-320", "epyc", "cpu=1", "fp32", 1, 2, 0.15, 0.0, 6.5, 13.0, 0.2, 2.0),
        StagePlan("classify", "resnet18", "epyc", "cpu=1", "fp32", 1, 1, 0.06, 0.0, 17.7, 17.7, 0.7, 1.0),
    )
    plan = replace(solve(pipeline.spec, pipeline.profiles, 8.0), stages=running)
    observed = _read(url, at, stages=("detect", "classify"))
    gaps, state = assess(plan, pipeline, observed, None, persist=1, buckets_ms=MLSERVER_BUCKETS_MS)
    detect, classify = gaps
    assert (detect.ratio, detect.streak, detect.reprofile) == (0.0, 0, False)
    assert classify.reprofile and classify.ratio == pytest.approx(500.0 / classify.predicted_p99_ms - 1)
    (event,) = reprofile_events(gaps)
    task = _profiling_dag_task()
    for extra in (event, {"versions": [event]}):
        context = {
            "dag_run": SimpleNamespace(conf={}),
            "triggering_asset_events": {"a": [SimpleNamespace(extra=extra)]},
        }
        assert task(**context) == ["models:/video-classifier/3"]
