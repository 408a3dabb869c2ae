"""Days of load from the real Prometheus: the history the export command and the retraining DAG read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ipa_airflow.cli import main
from ipa_airflow.forecasting.sources import LoadSourceError, PrometheusSource, read_trace
from tests.integration.conftest import HISTORY_DAYS, OUTAGE, history_counts

pytestmark = pytest.mark.slow
# irate: the increase between the last two samples, so a 1-s scrape gives each second's requests.
QUERY = "sum(irate(ipa_requests_total[5s]))"


LOOKBACK = 5  # seconds into the outage that irate still finds its two last samples in its window


def expected(start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """The requests of each second, and which seconds have a rate (two samples in a row); left out: the
    first LOOKBACK seconds of the outage, where Prometheus repeats the last rate it had."""
    t = np.arange(start, end)
    sampled = ~((t - start >= OUTAGE[0]) & (t - start < OUTAGE[1]))
    has_rate = sampled & np.concatenate([[False], sampled[:-1]])
    return np.where(has_rate, history_counts(t), 0), has_rate


def known(seconds: np.ndarray, start: int) -> np.ndarray:
    return ~((seconds - start >= OUTAGE[0]) & (seconds - start < OUTAGE[0] + LOOKBACK))


def test_history_reads_whole_days_in_chunks_and_leaves_the_outage_out(prometheus_history):
    url, start, end = prometheus_history
    calls = []
    history = PrometheusSource(url, QUERY).history(
        start, end, chunk_s=10_000, progress=lambda done, total: calls.append((done, total))
    )
    want, has_rate = expected(start, end)
    assert history.start == start and len(history.rates) == HISTORY_DAYS * 86_400
    k = known(np.arange(start, end), start)
    np.testing.assert_array_equal(history.rates[k], want[k])  # every second in its place across chunks
    assert history.covered == pytest.approx(has_rate.mean(), abs=LOOKBACK / len(k))
    assert len(calls) == -(-(end - start) // 10_000) and calls[-1] == (end - start, end - start)
    assert history.require(0.99, what="a test") is history
    with pytest.raises(LoadSourceError, match=r"samples for 99\.7% of the 2 days asked for to train"):
        history.require(0.999, what="to train")


def test_export_writes_a_trace_the_backtests_read(prometheus_history, tmp_path, capsys):
    url, start, end = prometheus_history
    out = tmp_path / "load.txt.gz"
    # --start and --end, not --days: the test must not depend on which day it runs
    argv = [
        "forecast",
        "export",
        "--prometheus",
        url,
        "--query",
        QUERY,
        "--start",
        str(start),
        "--end",
        str(end),
    ]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["start"] == start and report["end"] == end and report["seconds"] == end - start
    k = known(np.arange(start, end), start)
    np.testing.assert_array_equal(read_trace(out)[k], expected(start, end)[0][k])
    # in the table form it says what to run next on the file
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "99.7% of seconds with a sample" in printed
    assert f"ipa forecast compare --trace {out} --damping 1 --train-days 0-0 --test-days 1-1" in printed
    assert main(["forecast", "backtest", "--trace", str(out), "--damping", "1", "--model", "level",
                 "--train-days", "0", "--test-days", "1", "--quantile", "0.9"]) == 0  # fmt: skip


def test_export_of_a_query_without_samples_writes_nothing(prometheus_history, tmp_path, capsys):
    url, start, end = prometheus_history
    out = tmp_path / "none.txt"
    argv = ["forecast", "export", "--prometheus", url, "--query", "sum(irate(no_such_metric[5s]))"]
    assert main([*argv, "--start", str(start), "--end", str(start + 7200), "--out", str(out)]) == 2
    assert "has no sample of `sum(irate(no_such_metric[5s]))`" in capsys.readouterr().err
    assert not out.exists()


def test_retraining_on_recent_load_registers_a_forecaster_of_it(prometheus_history, mlflow_server):
    from ipa_airflow.forecasting.mlflow_store import load_forecaster
    from ipa_airflow.forecasting.retrain import retrain_on_recent_load

    url, start, end = prometheus_history
    out = retrain_on_recent_load(
        PrometheusSource(url, QUERY),
        days=HISTORY_DAYS,
        now=end + 3600,  # an hour into the day after the history
        tracking_uri=mlflow_server,
        train_days="0",
        test_days="1",
        model="lstm-quantile",
        registered_name="ipa-recent-load",
    ).to_dict()
    assert out["registered"] and out["load"]["start"] == start and out["load"]["covered"] > 0.99
    fitted = load_forecaster(out["model_uri"], tracking_uri=mlflow_server)
    # it learned this load (20-24 req/s and a few more every 7th second), not the damped shipped trace
    last_hour = expected(end - 3600, end)[0].astype(float)
    assert 20 <= fitted.forecast(last_hour).point <= 30
    with pytest.raises(LoadSourceError, match="to retrain the load forecaster"):
        retrain_on_recent_load(
            PrometheusSource(url, "sum(irate(no_such_metric[5s]))"),
            days=HISTORY_DAYS,
            now=end,
            tracking_uri=mlflow_server,
            train_days="0",
            test_days="1",
        )
