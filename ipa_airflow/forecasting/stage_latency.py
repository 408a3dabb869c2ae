"""Each stage's observed p99 latency, read from Prometheus: one instant query per stage.

The default query reads the latency histogram MLServer exports for REST requests. MLServer 1.6 wraps its
REST app in starlette_exporter's PrometheusMiddleware (prefix `metrics_rest_server_prefix`, default
'rest_server'), so the histogram is `rest_server_request_duration_seconds` with labels method, path,
status_code and app_name, in prometheus_client's default buckets. (`model_infer_request_duration`, labels
model and version, is a Summary: only a count and a sum, no quantile can be read from it.) The histogram
holds every REST path, readiness probes included, so the query keeps the infer paths only, raw
('/v2/models/detect/infer') or grouped ('/v2/models/{model_name}/infer').

The pod labels `pipeline` and `stage` are what docker/prometheus/prometheus-kubernetes.yml relabels the
Deployments' pod labels `ipa.io/pipeline` and `ipa.io/stage` to; a Prometheus set up otherwise sets its
own query (IPA_DRIFT_QUERY) with the placeholders {pipeline}, {stage}, {namespace}, {deployment} and
{window}. The query answers seconds, Prometheus' unit.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from .promql import render_query  # noqa: F401 - also imported from here
from .sources import MAX_ANSWER_BYTES, LoadSourceError

DEFAULT_QUERY = (
    "histogram_quantile(0.99, sum by (le) (rate(rest_server_request_duration_seconds_bucket{"
    'pipeline="{pipeline}", stage="{stage}", path=~"/v2/models/[^/]+(/versions/[^/]+)?/infer"'
    "}[{window}])))"
)
# prometheus_client's default histogram buckets, which MLServer's REST histogram uses (in ms): what
# `drift.assess(buckets_ms=...)` needs to know how finely the p99 can be read.
MLSERVER_BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
                       7500.0, 10000.0)  # fmt: skip


def stage_p99_ms(
    prometheus_url: str,
    query_template: str = DEFAULT_QUERY,
    *,
    pipeline: str,
    namespace: str,
    stages: Sequence[str],
    window_s: float,
    at: float | None = None,
    timeout_s: float = 10.0,
) -> dict[str, float | None]:
    """Each stage's p99 over the `window_s` seconds before `at` (unix time; None: now), in ms. None for a
    stage Prometheus has no number for (no requests in the window, no such series): drift then skips the
    stage. LoadSourceError when Prometheus cannot be read or refuses the query."""
    if urllib.parse.urlsplit(prometheus_url).scheme not in ("http", "https"):
        raise ValueError(f"the Prometheus URL must start with http:// or https://, got {prometheus_url!r}")
    out: dict[str, float | None] = {}
    for stage in stages:
        query = render_query(
            query_template, pipeline=pipeline, namespace=namespace, stage=stage, window_s=window_s
        )
        seconds = instant_query(prometheus_url, query, at=at, timeout_s=timeout_s)
        out[stage] = None if seconds is None else seconds * 1000.0
    return out


def instant_query(url: str, query: str, *, at: float | None = None, timeout_s: float = 10.0) -> float | None:
    """The one number an instant query answers, or None for an empty, NaN or infinite answer."""
    params = {"query": query}
    if at is not None:
        params["time"] = f"{at:.3f}"
    where = f"Prometheus at {url}"
    full = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(full, timeout=timeout_s) as resp:
            body = resp.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise LoadSourceError(f"{where} answered {exc.code} to `{query}`: {detail}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise LoadSourceError(f"cannot reach Prometheus at {url}: {exc!r:.300}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise LoadSourceError(f"{where} answered more than {MAX_ANSWER_BYTES >> 20} MiB to `{query}`")
    return decode_instant_answer(body, where=where, query=query)


def decode_instant_answer(body: bytes, *, where: str, query: str) -> float | None:
    """The value of an instant query's answer with at most one series: None when it has none, or its
    value is NaN (no requests in the window) or infinite. A failed query, an answer that is not an
    instant vector, more than one series and a negative latency are LoadSourceErrors: the query is
    wrong, for every stage alike."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise LoadSourceError(
            f"{where} answered something that is not a query result: {body[:200]!r}"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data", {}), dict):
        raise LoadSourceError(f"{where} answered something that is not a query result: {body[:200]!r}")
    if doc.get("status") != "success":
        why = doc.get("error") or doc.get("status") or "no status"
        raise LoadSourceError(f"the query `{query}` failed ({where}): {str(why)[:300]}")
    data = doc.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        result = [{"value": result}]
    elif kind != "vector" or not isinstance(result, list):
        raise LoadSourceError(
            f"{where} answered a {str(kind)[:40]!r} result to `{query}`; a stage's latency is one number "
            "(an instant vector)"
        )
    if not result:
        return None
    if len(result) > 1:
        raise LoadSourceError(
            f"`{query}` returned {len(result)} series; aggregate it to one per stage (sum by (le) (...))"
        )
    try:
        value = float(result[0]["value"][1])
    except (ValueError, KeyError, IndexError, TypeError, OverflowError):
        raise LoadSourceError(
            f"{where} answered something that is not a query result: {body[:200]!r}"
        ) from None
    if not math.isfinite(value):
        return None
    if value < 0:
        raise LoadSourceError(f"`{query}` answered a latency of {value:g} s ({where}): check the query")
    return value
