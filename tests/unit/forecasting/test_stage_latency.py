"""The per-stage latency query: its template, and the answers it may get (the real Prometheus is in
tests/integration/test_stage_latency.py)."""

import json

import pytest

from ipa_airflow.forecasting.sources import LoadSourceError
from ipa_airflow.forecasting.stage_latency import (
    DEFAULT_QUERY,
    decode_instant_answer,
    render_query,
    stage_p99_ms,
)


def test_the_default_query_reads_mlservers_infer_histogram_for_one_stage():
    q = render_query(DEFAULT_QUERY, pipeline="video-cpu", namespace="ipa", stage="detect", window_s=60)
    assert q == (
        "histogram_quantile(0.99, sum by (le) (rate(rest_server_request_duration_seconds_bucket{"
        'pipeline="video-cpu", stage="detect", path=~"/v2/models/[^/]+(/versions/[^/]+)?/infer"}[60s])))'
    )


def test_every_placeholder_is_filled_and_promql_braces_are_left_alone():
    template = 'x{a="{namespace}",d="{deployment}",s="{stage}",p="{pipeline}"}[{window}] {other}'
    q = render_query(template, pipeline="video", namespace="ns", stage="detect", window_s=1.5)
    assert q == 'x{a="ns",d="video-detect",s="detect",p="video"}[1500ms] {other}'
    assert (
        render_query("{namespace}", pipeline="v", namespace='a"b\\c', stage="s", window_s=1) == 'a\\"b\\\\c'
    )
    with pytest.raises(ValueError, match="positive number of seconds"):
        render_query(DEFAULT_QUERY, pipeline="v", namespace="n", stage="s", window_s=0)


def vector(*values) -> bytes:
    result = [{"metric": {"i": str(i)}, "value": [1700000000.0, v]} for i, v in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (vector("0.235"), 0.235),
        (vector(), None),  # no such series
        (vector("NaN"), None),  # no requests in the window: rate 0 / 0
        (vector("+Inf"), None),
        (
            json.dumps(
                {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.5"]}}
            ).encode(),
            0.5,
        ),
    ],
)
def test_an_answer_is_one_number_or_none(body, want):
    assert decode_instant_answer(body, where="here", query="q") == want


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (vector("0.1", "0.2"), "returned 2 series; aggregate it"),
        (vector("-0.1"), "a latency of -0.1 s"),
        (json.dumps({"status": "error", "error": "parse error"}).encode(), "failed .here.: parse error"),
        (
            json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode(),
            "'matrix'",
        ),
        (b"<html>maintenance</html>", "not a query result"),
        (
            json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": [{"value": []}]}}
            ).encode(),
            "not a query result",
        ),
    ],
)
def test_a_wrong_query_or_a_server_that_is_not_prometheus_is_an_error(body, match):
    with pytest.raises(LoadSourceError, match=match):
        decode_instant_answer(body, where="here", query="q")


def test_a_url_that_is_not_http_is_refused_before_any_query():
    with pytest.raises(ValueError, match="must start with http"):
        stage_p99_ms("prometheus:9090", pipeline="v", namespace="n", stages=["s"], window_s=60)
