"""Load sources: per-second request counts from a trace file or from Prometheus.

Both return a plain numpy array of requests per second, oldest first, so forecasters and backtests do
not care where the numbers came from. A Prometheus history can be written as a trace file
(`write_trace`), so every backtest and the forecaster training run on a user's own traffic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import http.client
import json
import math
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import LoadSourceError  # noqa: F401 - re-exported: every source raises it
from .traces import read_trace  # noqa: F401 - re-exported

SECONDS_PER_DAY = 86_400
MAX_HISTORY_DAYS = 366  # the most `history` reads in one call, as `ipa forecast export --days` allows


def days(series: np.ndarray, first: int, last: int) -> np.ndarray:
    """Days first..last (inclusive) of a per-second series."""
    start, stop = first * SECONDS_PER_DAY, (last + 1) * SECONDS_PER_DAY
    if stop > len(series):
        raise ValueError(
            f"the trace has {len(series) / SECONDS_PER_DAY:.1f} days ({len(series)} s), but days "
            f"{first}-{last} were asked for (up to second {stop}): use a longer trace, or other days "
            "(--train-days, --test-days)"
        )
    return series[start:stop]


def write_trace(path: str | Path, rates: np.ndarray) -> Path:
    """Write per-second rates in read_trace's format (gzip-compressed when the name ends in .gz), whole
    or not at all: into a temporary file beside `path`, renamed once complete, so an interrupted write
    never leaves a shorter trace that reads as a good one."""
    path = Path(path)
    _check_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with opener(tmp, "wt") as fh:
            np.savetxt(fh, np.asarray(rates, dtype=float), fmt="%.6g")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _check_regular(path: Path) -> None:
    """The rename that makes a write whole would replace a device or pipe (/dev/null) by a file."""
    if path.exists() and not path.is_file():
        raise ValueError(f"cannot write the trace {path}: it exists and is not a regular file")


def check_writable(path: str | Path) -> Path:
    """Make sure `write_trace(path)` will be able to write, before a long fetch: try to create an entry
    in the file's folder (or, when it does not exist yet, in the nearest folder above it, which is
    where write_trace creates it), and remove it again. A try, not os.access: that says yes to root
    everywhere, and no to nothing on a read-only or special file system (/proc, /sys)."""
    path = Path(path)
    _check_regular(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if folder == path.parent:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(dir=folder, prefix=".ipa-probe-"))
    except OSError as exc:
        raise ValueError(
            f"cannot write the trace {path}: creating a file in {folder} fails ({exc.strerror or exc}); "
            "choose another --out (nothing was fetched)"
        ) from None
    return path


def last_whole_days(now: float, days: int) -> tuple[int, int]:
    """[start, end) in unix seconds of the `days` whole UTC days before `now`'s day: a trace that
    starts at midnight, so on the hour, as the clock-aware forecasters take a trace to."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    end = int(now) // SECONDS_PER_DAY * SECONDS_PER_DAY
    return end - days * SECONDS_PER_DAY, end


def parse_days(text: str) -> tuple[int, int]:
    """'0-9' -> (0, 9); '12' -> (12, 12)."""
    try:
        a, _, b = text.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise ValueError(f"days must look like '0-9' or '12', got '{text}'") from None
    if first < 0 or last < first:
        raise ValueError(f"days must look like '0-9' or '12', got '{text}'")
    return first, last


def named_days(series: np.ndarray, text: str) -> tuple[np.ndarray, int]:
    """The days `text` names ('0-9') and the second of the series the first of them starts at."""
    first, last = parse_days(text)
    return days(series, first, last), first * SECONDS_PER_DAY


@dataclass(frozen=True)
class TraceReplay:
    """A trace replayed as if live: unix time `origin` is second 0 of the trace, and it wraps around."""

    series: np.ndarray
    origin: float = 0.0

    def rates(self, *, end: float, window_s: int = 120, step_s: float = 1.0) -> np.ndarray:
        stop = int(end - self.origin) % len(self.series)
        idx = np.arange(stop - window_s + 1, stop + 1) % len(self.series)
        return self.series[idx]


# Prometheus answers at most 11,000 points per series; 3 hours of seconds stay under it.
MAX_POINTS_PER_QUERY = 3 * 3600
# The rate of requests a pipeline's first stage receives: MLServer's REST request counter (every outcome,
# not only successes, so a failing stage does not hide load), inference paths only (the counter also holds
# readiness probes; MLServer labels the path with its template, /v2/models/{model_name}/infer). `pipeline`
# and `stage` are the labels docker/prometheus/prometheus-kubernetes.yml relabels the pods' ipa.io/pipeline
# and ipa.io/stage to; the placeholders are filled in per pipeline (`PrometheusSource.for_pipeline`).
DEFAULT_LOAD_QUERY = (
    'sum(rate(rest_server_requests_total{pipeline="{pipeline}", stage="{stage}", '
    'path=~"/v2/models/[^/]+(/versions/[^/]+)?/infer"}[2s]))'
)


@dataclass(frozen=True)
class PrometheusSource:
    """The request rate of a pipeline over the Prometheus HTTP API (a range query at 1-s resolution).

    Every answer goes through `decode_range_answer`: an answer that is not a range query result, holds
    a rate no load can have (+Inf, negative), or has no sample at all is a failed read (LoadSourceError),
    never load 0. A forecast of 0 from an empty answer would scale the pipeline to its minimum while
    the traffic is still there."""

    url: str  # e.g. http://prometheus:9090
    query: str = DEFAULT_LOAD_QUERY  # {pipeline} and the like are filled in by `for_pipeline`
    timeout_s: float = 10.0
    # The newest sample may lag `end` by the scrape interval and the rate's window; a longer silence
    # means the series stopped (exporters gone, relabelled, or not scraped), not that load went to 0.
    stale_after_s: float = 30.0

    def __post_init__(self) -> None:
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"the Prometheus URL must start with http:// or https://, got {self.url!r}")

    def for_pipeline(self, spec) -> PrometheusSource:
        """This source with the query's placeholders filled in for `spec`: its load is what its first
        stage receives."""
        from .promql import render_query

        query = render_query(
            self.query, pipeline=spec.name, namespace=spec.namespace, stage=spec.stages[0].name
        )
        return dataclasses.replace(self, query=query)

    def rates(self, *, end: float, window_s: int = 120, step_s: float = 1.0) -> np.ndarray:
        """Per-second rates over the `window_s` seconds before `end` (unix time). Steps without a sample
        (or with NaN) count as 0, but a window without any sample, or whose newest sample is more than
        `stale_after_s` old, is a LoadSourceError."""
        n = int(round(window_s / step_s))
        start = end - window_s + step_s
        out = np.zeros(n)
        newest = -math.inf
        for ts, v in self._points(start, end, step_s):
            i = int(round((ts - start) / step_s))
            if 0 <= i < n and math.isfinite(v):
                out[i] = v
                newest = max(newest, ts)
        if newest == -math.inf:
            raise LoadSourceError(
                f"Prometheus at {self.url} has no sample of `{self.query}` in the {window_s:g} s before "
                f"{_utc(end)} (an empty or NaN answer): a failed read, not zero load. Check the query, "
                "that the model servers export the metric and that Prometheus scrapes them"
            )
        if end - newest > self.stale_after_s:
            raise LoadSourceError(
                f"the newest sample of `{self.query}` at {self.url} is {end - newest:.0f} s old "
                f"(at most {self.stale_after_s:g} s expected): the series stopped, which is a failed read, "
                "not zero load. Check that Prometheus still scrapes the model servers"
            )
        return out

    def history(
        self,
        start: int,
        end: int,
        *,
        chunk_s: int = MAX_POINTS_PER_QUERY,
        progress: Callable[[int, int], None] | None = None,
    ) -> History:
        """The per-second rates of [start, end) (unix seconds), in range queries of at most `chunk_s`
        points (Prometheus refuses more than 11,000 per series); `progress(done_s, total_s)` after
        each. Seconds without a sample count as 0 and are left out of `History.covered`."""
        if end <= start:
            raise ValueError(f"the history must end after it starts, got {start} to {end}")
        if end - start > MAX_HISTORY_DAYS * SECONDS_PER_DAY:  # one float per second: a year is 250 MB
            raise ValueError(
                f"the history from {start} to {end} spans {(end - start) / SECONDS_PER_DAY:.0f} days; "
                f"read at most {MAX_HISTORY_DAYS} at a time (--start/--end, or --days)"
            )
        out = np.zeros(end - start)
        seen = np.zeros(end - start, dtype=bool)
        for lo in range(start, end, chunk_s):
            hi = min(lo + chunk_s, end)
            for ts, v in self._points(lo, hi - 1, 1.0):
                i = int(round(ts)) - start
                if lo - start <= i < hi - start and math.isfinite(v):
                    out[i], seen[i] = v, True
            if progress:
                progress(hi - start, end - start)
        return History(out, start, float(seen.mean()))

    def _points(self, start: float, end: float, step_s: float) -> list[tuple[float, float]]:
        """(unix time, value) of the query's one series from start to end, both included."""
        from .promql import placeholders

        if placeholders(self.query):
            raise LoadSourceError(
                f"the query `{self.query}` still has {', '.join(placeholders(self.query))}, which are "
                "filled in per pipeline (a spec's name and first stage); here no pipeline is known: name one "
                "(--spec) or set IPA_PROMETHEUS_QUERY / --query to a query without placeholders"
            )
        params = {"query": self.query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        url = f"{self.url.rstrip('/')}/api/v1/query_range?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                body = resp.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise LoadSourceError(
                f"Prometheus at {self.url} answered {exc.code} to `{self.query}`: {detail}"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # HTTPException: a peer that is not an HTTP server, or that hung up mid-answer
            raise LoadSourceError(f"cannot reach Prometheus at {self.url}: {exc!r:.300}") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise LoadSourceError(
                f"Prometheus at {self.url} answered more than {MAX_ANSWER_BYTES >> 20} MiB to `{self.query}`"
            )
        return decode_range_answer(body, where=f"Prometheus at {self.url}", query=self.query)


# A range query of 11,000 points is well under 1 MiB; anything far larger is not Prometheus answering.
MAX_ANSWER_BYTES = 32 << 20


def decode_range_answer(body: bytes, *, where: str, query: str) -> list[tuple[float, float]]:
    """The (unix time, value) points of a range query's answer with one series (none when it is empty).

    NaN values are kept (they count as no sample); a status other than success, an answer that is not
    a `matrix`, more than one series, a point that is not [time, number], a time that is not finite, and
    a rate of +-Inf or below 0 are LoadSourceErrors: no request rate can be any of them."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # also UnicodeDecodeError
        raise LoadSourceError(
            f"{where} answered something that is not a range query result (not JSON): {body[:200]!r}"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data", {}), dict):
        raise LoadSourceError(f"{where} answered something that is not a range query result: {body[:200]!r}")
    if doc.get("status") != "success":
        why = doc.get("error") or doc.get("status") or "no status"
        raise LoadSourceError(f"the query `{query}` failed ({where}): {str(why)[:300]}")
    data = doc.get("data", {})
    kind = data.get("resultType", "matrix")  # a proxy may drop it; the result's shape is checked below
    if kind != "matrix":
        raise LoadSourceError(
            f"{where} answered a {str(kind)[:40]!r} result, not a range query result (matrix), to `{query}`"
        )
    result = data.get("result")
    if not isinstance(result, list):
        raise LoadSourceError(f"{where} answered something that is not a range query result: {body[:200]!r}")
    if len(result) > 1:
        raise LoadSourceError(f"`{query}` returned {len(result)} series; aggregate it to one (sum(...))")
    if not result:
        return []
    try:
        points = [(float(ts), float(value)) for ts, value in result[0]["values"]]
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        raise LoadSourceError(
            f"{where} answered something that is not a range query result: {body[:200]!r}"
        ) from None
    for ts, value in points:
        if not math.isfinite(ts):
            raise LoadSourceError(
                f"{where} answered a sample at time {ts} for `{query}`: not a range query result"
            )
        if value < 0 or math.isinf(value):
            raise LoadSourceError(
                f"{where} answered {value:g} req/s at {_utc(ts)} for `{query}`: no request rate is "
                "negative or infinite. Check the query (rate() of a counter) and the exporter"
            )
    return points


def _utc(t: float) -> str:
    try:
        return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):
        return f"unix time {t:g}"


@dataclass(frozen=True)
class History:
    """Per-second rates from unix second `start`, and the share of seconds Prometheus had a sample for."""

    rates: np.ndarray
    start: int
    covered: float

    def require(self, min_covered: float, *, what: str) -> History:
        """Itself, or a LoadSourceError when too few seconds had a sample: zeros where Prometheus kept
        nothing would be learned as load that never came."""
        if self.covered < min_covered:
            days = len(self.rates) / SECONDS_PER_DAY
            raise LoadSourceError(
                f"Prometheus has samples for {self.covered:.1%} of the {days:g} days asked for {what} "
                f"(at least {min_covered:.0%} needed). Check its retention (--storage.tsdb.retention.time) "
                "covers them and that it scrapes the model servers every second."
            )
        return self
