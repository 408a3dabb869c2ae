"""Selfcheck kind `prometheus`: one canned Prometheus answer through the read path the forecast task uses.

Case keys (besides `id`, `about`, `expect`, `match`):
- `answer`: the body, as text (sent as is: "not JSON" is a case) or as a mapping (sent as JSON). The
  tokens `{t}` and `{t-N}` become the unix time of the decision and N seconds before it, so samples
  land in the window the forecaster reads.
- `status`: the HTTP status of the answer (default 200).
- `no_answer`: true for a server that accepts the connection and never answers.
- `last_good`: false to forecast without a good forecast from 30 s before (default: with one).

The answer is served from a loopback http.server on a free port; `forecast_for` then reads it through
`PrometheusSource.rates`, as the forecast task and the adaptation loop do. Outcomes: a forecast taken from
the answer is `ok` when the case expects it and `silent` otherwise (an empty or NaN answer read as load
0 would scale the pipeline to its minimum); a LoadSourceError, or the last good forecast reused with
a note saying why, is `clear-error` when the text matches `match` (`unclear` when not), `refused` when
the case expected the answer to be used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from ...forecasting import step
from ...forecasting.base import Forecast
from ...forecasting.catalog import forecaster
from ...forecasting.sources import LoadSourceError, PrometheusSource
from ...forecasting.step import forecast_for

END = 1_800_000_000  # the decision's unix time: fixed, so cases can place their samples
LAST_GOOD = 50.0  # the good forecast of 30 s before; a fallback reuses exactly it


def check(case: dict) -> list[tuple[str, str]]:
    out = []
    if not isinstance(case.get("answer", ""), str | dict | list):
        out.append(("answer", "the body: text (sent as is) or a mapping (sent as JSON)"))
    status = case.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        out.append(("status", f"an HTTP status from 100 to 599, got {status!r}"))
    for key in ("no_answer", "last_good"):
        if not isinstance(case.get(key, False), bool):
            out.append((key, "true or false"))
    if case.get("expect") == "error" and not case.get("match"):
        out.append(("match", "a case expecting an error says what the error must name (match: REGEX)"))
    return out


def run(case: dict, workdir: Path) -> tuple[str, str]:
    answer = case.get("answer", "")
    body = answer if isinstance(answer, str) else json.dumps(answer)
    body = re.sub(r"\{t(?:-(\d+))?\}", lambda m: str(END - int(m.group(1) or 0)), body)
    now = dt.datetime.fromtimestamp(END, dt.UTC)
    last_good = None
    if case.get("last_good", True):
        issued = (now - dt.timedelta(seconds=30)).isoformat(timespec="seconds")
        last_good = Forecast("max", 20, LAST_GOOD, {"0.95": LAST_GOOD, "0.99": LAST_GOOD}, issued)
    fitted = forecaster("max").fit(np.tile([10.0, 20.0, 30.0, 20.0], 900))
    with _serving(body.encode(), int(case.get("status", 200)), bool(case.get("no_answer"))) as url:
        # The default query is filled in per pipeline; these cases are about answers, not queries.
        source = PrometheusSource(url, "sum(rate(requests_total[2s]))", timeout_s=2)
        quiet = logging.getLogger(step.__name__)
        was, quiet.disabled = quiet.disabled, True  # the step logs each fallback; the note says it too
        try:
            f = forecast_for(
                lambda w: source.rates(end=END, window_s=w), fitted, now=now, last_good=last_good
            )
        except LoadSourceError as exc:
            return _refused(case, str(exc))
        finally:
            quiet.disabled = was
    if f.note.startswith("fallback: last good forecast"):
        if f.point != LAST_GOOD or any(v != LAST_GOOD for v in f.quantiles.values()):
            return "silent", f"a fallback that is not the last good forecast: {f}"
        return _refused(case, f.note)
    said = f"forecast {f.point:g} req/s (quantiles {dict(f.quantiles)}) from the answer, note {f.note!r}"
    return ("ok" if case.get("expect") == "ok" else "silent"), said


def _refused(case: dict, message: str) -> tuple[str, str]:
    if case.get("expect") == "ok":
        return "refused", message
    match = case.get("match")
    if match and not re.search(match, message, re.IGNORECASE):
        return "unclear", f"the failed read does not say /{match}/: {message}"
    return "clear-error", message


@contextmanager
def _serving(body: bytes, status: int, no_answer: bool) -> Iterator[str]:
    """A loopback server answering every GET with `body` and `status` (or never answering); its URL."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if no_answer:
                release.wait(30)  # hold the connection open until the case is over
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
