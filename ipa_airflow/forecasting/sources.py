"""Load sources: per-second request counts from a trace file or from Prometheus.

Both return a plain numpy array of requests per second, oldest first, so forecasters and backtests do
not care where the numbers came from. A Prometheus history can be written as a trace file
(`write_trace`), so every backtest and the forecaster training run on a user's own traffic.
"""

from __future__ import annotations

import gzip
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SECONDS_PER_DAY = 86_400


class LoadSourceError(RuntimeError):
    """The load could not be read; the message says from where and what to do."""


def read_trace(path: str | Path, *, damping: float = 1.0) -> np.ndarray:
    """One number per line = requests in that second (.txt or .txt.gz), divided by `damping`."""
    path = Path(path)
    if damping <= 0:
        raise ValueError(f"damping must be positive, got {damping}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as fh:
            values = np.loadtxt(fh, dtype=np.float64, ndmin=1)
    except OSError as exc:
        raise LoadSourceError(f"cannot read trace {path}: {exc}") from None
    except ValueError as exc:
        raise LoadSourceError(f"trace {path} is not one number per line: {exc}") from None
    if values.size == 0:
        raise LoadSourceError(f"trace {path} is empty")
    if (values < 0).any() or not np.isfinite(values).all():
        raise LoadSourceError(f"trace {path} holds negative or non-finite counts")
    return values / damping


def days(series: np.ndarray, first: int, last: int) -> np.ndarray:
    """Days first..last (inclusive) of a per-second series."""
    start, stop = first * SECONDS_PER_DAY, (last + 1) * SECONDS_PER_DAY
    if stop > len(series):
        raise ValueError(
            f"the trace has {len(series) / SECONDS_PER_DAY:.1f} days; days {first}-{last} asked for"
        )
    return series[start:stop]


def write_trace(path: str | Path, rates: np.ndarray) -> Path:
    """Write per-second rates in read_trace's format (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as fh:
        np.savetxt(fh, np.asarray(rates, dtype=float), fmt="%.6g")
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


@dataclass(frozen=True)
class PrometheusSource:
    """The request rate of a pipeline over the Prometheus HTTP API (a range query at 1-s resolution)."""

    url: str  # e.g. http://prometheus:9090
    query: str = "sum(rate(ipa_requests_total[2s]))"
    timeout_s: float = 10.0

    def rates(self, *, end: float, window_s: int = 120, step_s: float = 1.0) -> np.ndarray:
        """Per-second rates over the `window_s` seconds before `end` (unix time). Missing steps count as 0."""
        n = int(round(window_s / step_s))
        start = end - window_s + step_s
        out = np.zeros(n)
        for ts, v in self._points(start, end, step_s):
            i = int(round((ts - start) / step_s))
            if 0 <= i < n and math.isfinite(v):
                out[i] = v
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
        params = {"query": self.query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        url = f"{self.url.rstrip('/')}/api/v1/query_range?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise LoadSourceError(
                f"Prometheus at {self.url} answered {exc.code} to `{self.query}`: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise LoadSourceError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        try:
            doc = json.loads(body)
            if doc.get("status") != "success":
                raise LoadSourceError(f"Prometheus query `{self.query}` failed: {doc.get('error', doc)}")
            result = doc["data"]["result"]
            if not isinstance(result, list):
                raise TypeError("the result of a range query is a list of series")
            if len(result) > 1:
                raise LoadSourceError(
                    f"`{self.query}` returned {len(result)} series; aggregate it to one (sum(...))"
                )
            return [(float(ts), float(value)) for ts, value in (result[0]["values"] if result else [])]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            raise LoadSourceError(
                f"Prometheus at {self.url} answered something that is not a range query result: "
                f"{body[:200]!r}"
            ) from None


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
