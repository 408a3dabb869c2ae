"""PromQL templates with the placeholders {pipeline}, {stage}, {namespace}, {deployment} and {window}:
one query per pipeline or stage from one setting (IPA_PROMETHEUS_QUERY, IPA_DRIFT_QUERY)."""

from __future__ import annotations

import math
import re

from ..spec import deployment_name

_PLACEHOLDER = re.compile(r"\{(pipeline|stage|namespace|deployment|window)\}")


def render_query(template: str, *, pipeline: str, namespace: str, stage: str, window_s: float = 2.0) -> str:
    """The template with its placeholders filled in. Only the five names are replaced, so PromQL's own
    braces (label matchers) need no escaping."""
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"the latency window must be a positive number of seconds, got {window_s}")
    window = f"{window_s:g}s" if float(window_s).is_integer() else f"{round(window_s * 1000)}ms"
    values = {
        "pipeline": _quoted(pipeline),
        "stage": _quoted(stage),
        "namespace": _quoted(namespace),
        "deployment": _quoted(deployment_name(pipeline, stage)),
        "window": window,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _quoted(value: str) -> str:
    """A label value as it may stand inside a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def placeholders(query: str) -> list[str]:
    """The placeholders a query still has (none once rendered)."""
    return sorted({m.group(0) for m in _PLACEHOLDER.finditer(query)})
