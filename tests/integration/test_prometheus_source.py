"""The Prometheus load source against the real server scraping a trace replay."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from ipa_airflow.forecasting.base import Forecast
from ipa_airflow.forecasting.catalog import forecaster
from ipa_airflow.forecasting.sources import LoadSourceError, PrometheusSource
from ipa_airflow.forecasting.step import forecast_for, forecast_step
from tests.integration.conftest import free_port

pytestmark = pytest.mark.slow
QUERY = "sum(rate(ipa_requests_total[3s]))"


def _wait_for_samples(url: str, needed: int, timeout_s: float = 60) -> None:
    """Poll until Prometheus holds `needed` scrapes (real time must pass for a real scraper)."""
    deadline = time.monotonic() + timeout_s
    q = urllib.parse.urlencode({"query": "count_over_time(ipa_requests_total[5m])"})
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=5) as resp:
            result = json.loads(resp.read())["data"]["result"]
        if result and float(result[0]["value"][1]) >= needed:
            return
        time.sleep(0.5)  # polling the server, not asserting on timing
    raise AssertionError(f"Prometheus did not collect {needed} scrapes in {timeout_s} s")


def test_rates_follow_the_replayed_trace(prometheus):
    url, exporter = prometheus
    _wait_for_samples(url, 12)
    rates = PrometheusSource(url, QUERY).rates(end=time.time(), window_s=8)
    assert len(rates) == 8
    seen = rates[rates > 0]
    assert len(seen) >= 5
    # The trace cycles 4, 8, 12, 8 req/s: the mean rate is 8 and no rate leaves [4, 12] by much.
    assert 5.5 <= seen.mean() <= 10.5
    assert seen.min() >= 3.0 and seen.max() <= 13.0


def test_a_forecast_from_prometheus(prometheus):
    url, _ = prometheus
    _wait_for_samples(url, 12)
    source = PrometheusSource(url, QUERY)
    fitted = forecaster("max").fit(np.tile([4.0, 8.0, 12.0, 8.0], 900))
    f = forecast_step(
        lambda: source.rates(end=time.time(), window_s=120), fitted, now=dt.datetime.now(dt.UTC)
    )
    assert f.note == "" and 4.0 <= f.point <= 13.0
    assert f.quantiles["0.95"] >= f.point * 0.9


def test_a_bad_query_is_a_clear_error(prometheus):
    url, _ = prometheus
    with pytest.raises(LoadSourceError, match="answered 400"):
        PrometheusSource(url, "sum(rate(").rates(end=time.time())


def test_something_that_is_not_prometheus(prometheus):
    _, exporter = prometheus
    with pytest.raises(LoadSourceError, match="not a range query result"):
        PrometheusSource(f"http://127.0.0.1:{exporter.port}/garbage", QUERY).rates(end=time.time())


def test_prometheus_down_is_a_clear_error():
    with pytest.raises(LoadSourceError, match="cannot reach Prometheus"):
        PrometheusSource(f"http://127.0.0.1:{free_port()}", QUERY, timeout_s=2).rates(end=time.time())


@pytest.mark.parametrize(
    "query",
    [
        "sum(rate(no_such_metric_total[3s]))",  # an empty result: no series
        "sum(rate(ipa_requests_total[3s])) * 0 / 0",  # a series of NaN
    ],
)
def test_an_empty_or_nan_answer_is_a_failed_read_not_zero_load(prometheus, query):
    """The real server's empty and NaN answers: the last good forecast comes back with the reason in
    its note, never a forecast of 0 that would scale the pipeline to its minimum."""
    url, _ = prometheus
    _wait_for_samples(url, 4)
    source = PrometheusSource(url, query)
    now = dt.datetime.now(dt.UTC)
    good = Forecast(
        "max", 20, 9.0, {"0.95": 10.0, "0.99": 11.0}, (now - dt.timedelta(seconds=30)).isoformat()
    )
    fitted = forecaster("max").fit(np.tile([4.0, 8.0, 12.0, 8.0], 900))
    f = forecast_for(lambda w: source.rates(end=now.timestamp(), window_s=w), fitted, now=now, last_good=good)
    assert (f.point, f.quantiles["0.99"]) == (9.0, 11.0)
    assert f.note.startswith("fallback: last good forecast (30 s old)") and "not zero load" in f.note
    with pytest.raises(LoadSourceError, match="an empty or NaN answer"):
        source.rates(end=now.timestamp())
