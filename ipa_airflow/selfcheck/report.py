"""The selfcheck report as people read it: counts per outcome, then every case that is a finding."""

from __future__ import annotations

from .runner import FAILURES, OUTCOMES, Report

_STYLE = {"clear-error": "green", "ok": "green", "hang": "red", "traceback": "red", "silent": "red"}


def render(report: Report, console) -> None:
    from rich.table import Table

    counts = report.counts
    table = Table(title=f"ipa selfcheck: {len(report.rows)} cases")
    for outcome in OUTCOMES:
        table.add_column(outcome, justify="right")
    table.add_row(
        *(
            f"[{_STYLE.get(o, 'yellow')}]{counts[o]}[/]" if counts[o] and o in FAILURES else str(counts[o])
            for o in OUTCOMES
        )
    )
    console.print(table)
    findings = report.findings
    if not findings:
        console.print("[green]no traceback, silent acceptance, hang or unclear error[/green]")
        return
    rows = Table(title=f"{len(findings)} findings")
    for col in ("case", "outcome", "what happened", "about", "in"):
        rows.add_column(col, overflow="fold")
    for r in findings:
        rows.add_row(r.id, f"[{_STYLE.get(r.outcome, 'yellow')}]{r.outcome}[/]", r.message, r.about, r.source)
    console.print(rows)
    if any(r.outcome == "hang" for r in findings):
        console.print(
            "[yellow]a hung case's thread cannot be stopped: it ran on in the background while the "
            "other cases ran[/yellow]"
        )
