"""Selfcheck kind `webhook`: deliveries posted to the MLflow webhook receiver, in-process.

Case keys (besides `id`, `about`, `expect`, `match`):
- `body`: the request body (text).
- `body_bytes`: pad the body with spaces to this many bytes (JSON allows trailing whitespace), for the
  size limit without a megabyte of YAML.
- `chunked`: true to send the body without a Content-Length (so the limit must hold while reading).
- `headers`: extra or replacing headers; `{now}` and `{now-N}` in a value become unix times.
  Default headers: Content-Type, X-MLflow-Delivery-Id `selfcheck-1`, X-MLflow-Timestamp `{now}`.
- `sign`: true to sign with the receiver's secret (over the final delivery id, timestamp and body),
  unless `headers` gives X-MLflow-Signature itself.
- `repeat`: post the same delivery this many times (default 1).
- `expect_status`: the status of the last post, or a list with one per post.
- `expect_events`: how many profiling runs (asset events) the posts may start in all; default 0 when
  no post is expected to be accepted, else not checked. A replay accepted twice, or MLflow's test
  delivery profiled, shows only here.

The app is `ipa_airflow.webhooks.create_app`, what the Airflow plugin mounts, with a stand-in for the
asset event (no Airflow database needed); it is driven through fastapi's TestClient. Outcomes: a 500 is
`traceback` (client input must never give one); statuses as expected are `ok` when every post was
accepted (2xx), else `clear-error` when the refusal's text matches `match` (`unclear` when not). Other
statuses: accepted where a refusal was expected is `silent`, refused where acceptance was expected is
`refused`, refused with another status than expected (for another reason) is `unclear`. More asset
events than `expect_events` is `silent` (acted on a delivery it should not have), fewer is `refused`.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from pathlib import Path

from ... import webhooks
from ...webhooks import ReplayGuard, create_app, sign

SECRET = "selfcheck-secret"


def check(case: dict) -> list[tuple[str, str]]:
    out = []
    if not isinstance(case.get("body", ""), str):
        out.append(("body", "the request body, as text"))
    headers = case.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str | int) for v in headers.values()):
        out.append(("headers", "a mapping of header names to text"))
    for key in ("sign", "chunked"):
        if not isinstance(case.get(key, False), bool):
            out.append((key, "true or false"))
    for key, lo in (("repeat", 1), ("body_bytes", 0), ("expect_events", 0)):
        n = case.get(key, lo)
        if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= 64 << 20:
            out.append((key, f"a whole number from {lo} to {64 << 20}, got {n!r}"))
    want = case.get("expect_status", 200)
    statuses = want if isinstance(want, list) else [want]
    if not statuses or not all(isinstance(x, int) and not isinstance(x, bool) for x in statuses):
        out.append(("expect_status", "an HTTP status, or a list with one per post"))
        return out
    if isinstance(want, list) and len(want) != case.get("repeat", 1):
        out.append(("expect_status", f"{len(want)} statuses for {case.get('repeat', 1)} posts"))
    accepted = all(200 <= x < 300 for x in statuses)
    if case.get("expect") == "ok" and not accepted:
        out.append(("expect_status", "expect: ok means every post is accepted (2xx)"))
    if case.get("expect") == "error":
        if accepted:
            out.append(("expect_status", "expect: error needs a refusal (4xx) among the statuses"))
        if not case.get("match"):
            out.append(("match", "a case expecting an error says what the refusal must name (match: REGEX)"))
    return out


def run(case: dict, workdir: Path) -> tuple[str, str]:
    with warnings.catch_warnings():  # starlette's notice about httpx is not the case's business
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    now = int(time.time())
    emitted: list[tuple[str, str, str]] = []

    def emit(name: str, version: str, delivery_id: str) -> int:
        emitted.append((name, version, delivery_id))
        return len(emitted)

    app = create_app(emit, secret=lambda: SECRET, guard=ReplayGuard(), clock=lambda: float(now))
    body = str(case.get("body", "")).encode()
    if case.get("body_bytes"):
        body = body.ljust(int(case["body_bytes"]), b" ")
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": "selfcheck-1",
        "X-MLflow-Timestamp": "{now}",
        **{str(k): str(v) for k, v in (case.get("headers") or {}).items()},
    }
    headers = {
        k: re.sub(r"\{now(?:([-+])(\d+))?\}", lambda m: str(now + int(f"{m[1] or '+'}{m[2] or 0}")), v)
        for k, v in headers.items()
    }
    if case.get("sign") and "X-MLflow-Signature" not in (case.get("headers") or {}):
        headers["X-MLflow-Signature"] = sign(
            SECRET, headers["X-MLflow-Delivery-Id"], headers["X-MLflow-Timestamp"], body
        )
    # Header values travel as latin-1 on the wire, as a client that sends non-ASCII bytes would.
    wire = {k: v.encode("latin-1", errors="replace") for k, v in headers.items()}
    repeat = int(case.get("repeat", 1))
    expected = case.get("expect_status", 200)
    expected = list(expected) if isinstance(expected, list) else [None] * (repeat - 1) + [expected]
    got: list[int] = []
    texts: list[str] = []
    quiet = logging.getLogger(webhooks.__name__)
    was, quiet.disabled = quiet.disabled, True  # the receiver logs each refusal; the report has them
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for _ in range(repeat):
                content = _chunks(body) if case.get("chunked") else body
                r = client.post("/mlflow", content=content, headers=wire)
                got.append(r.status_code)
                texts.append(r.text[:300])
    finally:
        quiet.disabled = was
    said = f"statuses {got}, last answer {texts[-1]}; asset events {len(emitted)}"
    if 500 in got:
        return "traceback", said
    for e, g, text in zip(expected, got, texts, strict=True):
        if e is None or e == g:
            continue
        wrong = f"expected statuses {expected}, got {got}: {text}"
        if 200 <= g < 300:
            return "silent", wrong
        return ("refused" if 200 <= e < 300 else "unclear"), wrong
    refused_all = all(e is not None and not 200 <= e < 300 for e in expected)
    events = case.get("expect_events", 0 if refused_all else None)
    if events is not None and len(emitted) != events:
        wrong = f"{len(emitted)} asset event(s) (profiling runs) where {events} expected: {said}"
        return ("silent" if len(emitted) > events else "refused"), wrong
    if all(200 <= g < 300 for g in got):
        return "ok", said
    match = case.get("match")
    if match and not re.search(match, texts[-1], re.IGNORECASE):
        return "unclear", f"HTTP {got[-1]}, but the answer does not say /{match}/: {texts[-1]}"
    return "clear-error", f"HTTP {got[-1]}: {texts[-1]} (statuses {got}, asset events {len(emitted)})"


def _chunks(body: bytes, size: int = 64 << 10):
    for i in range(0, len(body), size):
        yield body[i : i + size]
