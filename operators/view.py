"""The pipelines view: what the plugin decided, per pipeline, as a page in the Airflow UI and as JSON.

Routes (under the plugin app's /ipa prefix): GET /pipelines (the page the Airflow nav opens in its
frame), GET /api/pipelines (the same data as JSON) and GET /icon.svg (the nav icon). The page is rendered
on the server (a Jinja template in ui/, an inline SVG chart): no build step, no script.
The data comes from `overview()` (ipa_airflow.reports.decision_runs); mlflow and the engine are imported
only when a page is asked for, never when Airflow loads the plugin.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipa_airflow.reports.pipelines_view import DecisionRow, Overview

UI = Path(__file__).parent / "ui"
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#017cee" '
    'stroke-width="2"><polyline points="3,17 9,11 13,15 21,7"/><polyline points="15,7 21,7 21,13"/></svg>'
)
# The chart's series: (DecisionRow field, label, colour, dashed).
SERIES = (
    ("forecast_rps", "point forecast", "#1f77b4", False),
    ("planned_rps", "planned load", "#ff7f0e", False),
    ("observed_peak_rps", "load that came (peak)", "#222222", False),
    ("capacity_rps", "capacity", "#2ca02c", True),
)


def create_router(overview: Callable[[], Overview], *, dependencies: Sequence[Any] = ()):
    """The view's routes. `overview` reads MLflow (a RegistryError says what is wrong with it);
    `dependencies` guard every route (the plugin passes Airflow's login)."""
    from fastapi import APIRouter, HTTPException
    from fastapi.responses import HTMLResponse, Response

    router = APIRouter(dependencies=list(dependencies))

    def read() -> tuple[Overview | None, str]:
        from ipa_airflow.registry.mlflow_profiles import RegistryError

        try:
            return overview(), ""
        except RegistryError as exc:
            return None, str(exc)

    # Plain `def`: FastAPI runs them in its thread pool, so MLflow's blocking client holds no event loop.
    @router.get("/pipelines", response_class=HTMLResponse)
    def pipelines_page() -> HTMLResponse:
        data, error = read()
        return HTMLResponse(render_page(data, error), status_code=503 if error else 200)

    @router.get("/api/pipelines")
    def pipelines_json() -> dict:
        data, error = read()
        if data is None:
            raise HTTPException(503, error)
        return data.to_dict()

    @router.get("/icon.svg")
    def icon() -> Response:
        return Response(ICON, media_type="image/svg+xml")

    return router


@cache
def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(UI), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["rps"] = lambda v: "–" if v is None else f"{v:.1f}"
    env.filters["when"] = when
    return env.get_template("pipelines.html")


def render_page(data: Overview | None, error: str = "") -> str:
    from markupsafe import Markup

    charts = {}
    if data is not None:
        charts = {p.pipeline: Markup(chart_svg(p.decisions[::-1])) for p in data.pipelines}
    return _template().render(data=data, error=error, charts=charts, series=SERIES)


def when(iso: str) -> str:
    """'2026-12-01T19:13:57+00:00' -> '2026-12-01 19:13:57 UTC' (the records' times are UTC)."""
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if t.tzinfo is not None else "")


def chart_svg(rows: Sequence[DecisionRow], *, width: int = 720, height: int = 220) -> str:
    """Forecast, planned load, the load that came and capacity over the decisions (oldest first), as an
    inline SVG. The legend is HTML beside it in the page, so it never covers a line."""
    left, right, top, bottom = 48, 12, 10, 26
    values = [getattr(r, f) for r in rows for f, *_ in SERIES if getattr(r, f) is not None]
    if len(rows) < 1 or not values:
        return '<p class="muted">no decisions to chart yet</p>'
    top_y = max(values) * 1.1 or 1.0
    span_x = max(len(rows) - 1, 1)

    def x(i: int) -> float:
        return left + (width - left - right) * (i / span_x if len(rows) > 1 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - v / top_y)

    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="forecast, planned load, observed load and capacity per decision">'
    ]
    for frac in (0, 0.25, 0.5, 0.75, 1):  # grid lines with their req/s
        v = top_y * frac
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e3e3"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">{v:.0f}</text>'
        )
    for field, label, colour, dashed in SERIES:
        points = [
            (x(i), y(getattr(r, field)), r) for i, r in enumerate(rows) if getattr(r, field) is not None
        ]
        if not points:
            continue
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for px, py, r in points:
            tip = html.escape(f"{label} {getattr(r, field):.1f} req/s at {when(r.decided_at)}")
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"><title>{tip}</title></circle>'
            )
    first, last = html.escape(when(rows[0].decided_at)), html.escape(when(rows[-1].decided_at))
    out.append(
        f'<text x="{left}" y="{height - 6}" class="tick">{first}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end" class="tick">{last}</text>'
        f'<text x="12" y="{top + 4}" class="tick" transform="rotate(-90 12 {top + 4})" text-anchor="end">'
        "req/s</text></svg>"
    )
    return "".join(out)
