"""PrometheusSource against canned answers: what a proxy, an old server or a broken exporter might send.
The real server is in tests/integration/test_prometheus_source.py."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ipa_airflow.cli import main
from ipa_airflow.forecasting.sources import LoadSourceError, PrometheusSource, last_whole_days, read_trace


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
        threading.Thread(target=server.serve_forever, daemon=True).start()
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
    rates = PrometheusSource(url).rates(end=1004, window_s=5)
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
        PrometheusSource(answering(body)).rates(end=1004, window_s=5)


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
    assert main(["forecast", "export", "--prometheus", url, "--days", "1", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["start_utc"] == "2026-11-22T00:00:00+00:00" and report["covered"] == round(1 / 86_400, 5)
    rates = read_trace(out)
    assert len(rates) == 86_400 and rates[5] == 7 and rates.sum() == 7
