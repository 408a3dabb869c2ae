"""PrometheusSource against canned answers: what a proxy, an old server or a broken exporter might send.
The real server is in tests/integration/test_prometheus_source.py."""

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from ipa_airflow.cli import main
from ipa_airflow.forecasting.base import Forecast
from ipa_airflow.forecasting.catalog import forecaster
from ipa_airflow.forecasting.sources import LoadSourceError, PrometheusSource, last_whole_days, read_trace
from ipa_airflow.forecasting.step import forecast_for, forecast_step

QUERY = "sum(rate(ipa_requests_total[2s]))"


@pytest.fixture
def answering():
    """Start a server that answers every GET with the body it is given; yields its URL's maker."""
    servers = []

    def serve(body: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def matrix(values) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}}
    ).encode()


def test_rates_land_on_their_seconds_and_missing_or_nan_steps_count_as_zero(answering):
    url = answering(matrix([[1001, "4"], [1003, "NaN"], [1004, "6.5"], [1100, "9"]]))
    rates = PrometheusSource(url, QUERY).rates(end=1004, window_s=5)
    assert rates.tolist() == [0.0, 4.0, 0.0, 0.0, 6.5]  # seconds 1000..1004; 1100 is outside the window


@pytest.mark.parametrize(
    "body",
    [
        matrix([[1001, "lots"]]),  # a value that is not a number
        matrix([[1001]]),  # a point without its value
        json.dumps({"status": "success", "data": {"result": [{"metric": {}}]}}).encode(),  # no values
        json.dumps({"status": "success", "data": {"result": "none"}}).encode(),
        b"<html>proxy login</html>",
    ],
)
def test_an_answer_that_is_not_a_range_query_result_is_a_clear_error(answering, body):
    with pytest.raises(LoadSourceError, match="not a range query result"):
        PrometheusSource(answering(body), QUERY).rates(end=1004, window_s=5)


def test_more_than_one_series_asks_for_an_aggregate(answering):
    two = {"status": "success", "data": {"result": [{"metric": {"a": "1"}, "values": []}] * 2}}
    with pytest.raises(LoadSourceError, match=r"returned 2 series; aggregate it to one \(sum"):
        PrometheusSource(answering(json.dumps(two).encode()), "rate(x[2s])").rates(end=1004, window_s=5)


def test_last_whole_days_end_at_the_midnight_before_now():
    now = 1_795_400_000  # 2026-11-23 02:13:20 UTC
    assert last_whole_days(now, 2) == (1_795_392_000 - 2 * 86_400, 1_795_392_000)
    with pytest.raises(ValueError, match="at least 1"):
        last_whole_days(now, 0)


def test_export_of_the_last_days_writes_one_line_per_second_of_them(answering, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("time.time", lambda: 1_795_400_000.0)
    url = answering(matrix([[1_795_392_000 - 86_400 + 5, "7"]]))  # every chunk answers this one point
    out = tmp_path / "load.txt"
    args = ["forecast", "export", "--prometheus", url, "--days", "1", "--out", str(out), "--json"]
    assert main([*args, "--spec", "profiles/pipelines/video-cpu.yaml"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["start_utc"] == "2026-11-22T00:00:00+00:00" and report["covered"] == round(1 / 86_400, 5)
    rates = read_trace(out)
    assert len(rates) == 86_400 and rates[5] == 7 and rates.sum() == 7


# ---- a failed read is never load 0 ---------------------------------------------------------------------
def doc(result, result_type="matrix", status="success") -> bytes:
    return json.dumps({"status": status, "data": {"resultType": result_type, "result": result}}).encode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            doc([]),
            r"no sample of .* \(an empty or NaN answer\): a failed read, not zero load",
        ),  # no series at all
        (matrix([[1001, "NaN"], [1004, "NaN"]]), "no sample of"),  # only NaN
        (matrix([[1003, "+Inf"]]), r"answered inf req/s at .*: no request rate is negative or infinite"),
        (matrix([[1003, "4"], [1004, "-2"]]), "answered -2 req/s"),
        (matrix([["NaN", "4"]]), "not a range query result"),  # a time that is no time
        (doc([{"metric": {}, "value": [1004, "5"]}], result_type="vector"), "a 'vector' result, not a range"),
        (
            json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode(),
            "parse error",
        ),
        (b"[1, 2]", "not a range query result"),  # JSON, but not an object
        (b"[" * 100_000, r"not a range query result \(not JSON\)"),  # nested past the parser's depth
    ],
)
def test_an_unusable_answer_is_a_failed_read_not_zero_load(answering, body, says):
    with pytest.raises(LoadSourceError, match=says):
        PrometheusSource(answering(body), QUERY).rates(end=1004, window_s=5)


def test_a_series_that_stopped_is_a_failed_read(answering):
    url = answering(matrix([[1000, "7"]]))  # inside the window, but 100 s before its end
    with pytest.raises(LoadSourceError, match=r"newest sample .* is 100 s old \(at most 30 s expected\)"):
        PrometheusSource(url, QUERY).rates(end=1100, window_s=120)


def test_zero_load_that_prometheus_measured_is_load_zero(answering):
    url = answering(matrix([[1003, "0"], [1004, "0"]]))
    assert PrometheusSource(url, QUERY).rates(end=1004, window_s=5).tolist() == [0.0] * 5


def test_a_url_without_a_scheme_is_refused_at_once():
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        PrometheusSource("prometheus:9090")


def _forecast(url: str, *, last_good, now):
    fitted = forecaster("max").fit(np.tile([10.0, 20.0, 30.0, 20.0], 900))
    source = PrometheusSource(url, QUERY)
    return forecast_for(
        lambda w: source.rates(end=now.timestamp(), window_s=w), fitted, now=now, last_good=last_good
    )


def test_an_empty_answer_reuses_the_last_good_forecast_then_fails(answering):
    """The issue's case: a good forecast 30 s old, then Prometheus answers nothing. The planner must get
    that forecast back (with the reason in the note), never a forecast of 0; past its age, an error."""
    now = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)
    good = Forecast(
        "max", 20, 41.0, {"0.95": 44.0, "0.99": 47.0}, (now - dt.timedelta(seconds=30)).isoformat()
    )
    url = answering(doc([]))
    f = _forecast(url, last_good=good, now=now)
    assert (f.point, dict(f.quantiles)) == (41.0, {"0.95": 44.0, "0.99": 47.0})
    assert f.note.startswith("fallback: last good forecast (30 s old)") and "not zero load" in f.note
    with pytest.raises(LoadSourceError, match="not zero load"):
        _forecast(url, last_good=None, now=now)
    with pytest.raises(LoadSourceError, match=r"the last good forecast is 90 s old, over the 60 s"):
        _forecast(url, last_good=good, now=now + dt.timedelta(seconds=60))


def test_a_forecaster_answering_nan_falls_back_to_the_reactive_estimate():
    class Broken:
        name = "broken"
        window = forecaster("max").fit(np.tile([10.0, 20.0], 1800)).window

        def forecast(self, rates, **kwargs):
            return Forecast("broken", 20, float("nan"), {"0.95": -1.0}, "")

    now = dt.datetime(2027, 1, 15, tzinfo=dt.UTC)
    f = forecast_step(lambda: np.full(120, 9.0), Broken(), now=now)
    assert f.model == "reactive" and f.point == 9.0 and "unusable load" in f.note


def test_negative_rates_from_any_source_are_a_failed_read():
    fitted = forecaster("max").fit(np.tile([10.0, 20.0], 1800))
    with pytest.raises(LoadSourceError, match="no usable rates"):
        forecast_step(lambda: np.array([3.0, -1.0]), fitted, now=dt.datetime(2027, 1, 15, tzinfo=dt.UTC))


def test_the_default_query_is_filled_in_per_pipeline_and_refused_unfilled():
    """The default reads MLServer's request counter on a pipeline's first stage: a source nobody filled in
    for a pipeline says so instead of asking Prometheus for a label value '{pipeline}'."""
    from ipa_airflow.spec import load_spec

    spec = load_spec("profiles/pipelines/video-cpu.yaml")
    source = PrometheusSource("http://127.0.0.1:1")
    with pytest.raises(LoadSourceError, match=r"still has \{pipeline\}, \{stage\}.*--spec"):
        source.rates(end=1004, window_s=5)
    query = source.for_pipeline(spec).query
    assert f'pipeline="{spec.name}", stage="{spec.stages[0].name}"' in query
    assert "rest_server_requests_total" in query and "{" + "pipeline}" not in query
