"""Everything `ipa` prints as a table (rich) or as JSON. Commands hand over plain results; rich is
imported only when a table is printed, so `ipa --help` does not load it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def console(*, stderr: bool = False):
    """The console progress and tables go to; `stderr` when stdout carries JSON."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Wide enough for a plan table when the output is a file or a pipe (CI logs, `| tee`).
    return Console(stderr=stderr) if stream.isatty() else Console(width=160, stderr=stderr)


def _table(title: str, columns: Sequence[str], left: Sequence[str] = ()):
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


# ---- plans ------------------------------------------------------------------------------------------
def plan(p) -> None:
    state = "[green]feasible[/green]" if p.feasible else "[red]INFEASIBLE[/red]"
    table = _table(
        f"{p.pipeline} @ {p.load_rps:g} req/s, policy {p.policy}: {state}",
        (
            "stage",
            "variant",
            "shape",
            "batch",
            "replicas",
            "latency ms",
            "queue ms",
            "capacity req/s",
            "cost",
        ),
        left=("stage", "variant", "shape"),
    )
    for s in p.stages:
        table.add_row(
            s.stage,
            s.variant,
            f"{s.hardware} {s.resources} {s.dtype}",
            str(s.batch),
            str(s.replicas),
            f"{s.latency_s * 1000:.1f}",
            f"{s.queue_s * 1000:.1f}",
            f"{s.capacity_rps:.1f}",
            f"{s.cost:g}",
        )
    out = console()
    out.print(table)
    out.print(
        f"latency {p.latency_s * 1000:.1f} ms of {p.sla_s * 1000:.0f} ms SLA | accuracy {p.accuracy:.4f} | "
        f"cost {p.cost:g} | objective {p.objective:.5f} | binding {', '.join(p.binding) or '-'} | "
        f"{p.solver} {p.status} in {p.solve_time_s * 1000:.1f} ms"
    )
    if p.message:
        out.print(f"[yellow]{p.message}[/yellow]")


def fleet_plan(f) -> None:
    """A fleet plan: a row per pipeline (its plan, what the quota cost it), then each pool's use."""
    from rich.markup import escape

    stages_col = "stages: variant b=batch xreplicas"
    table = _table(
        f"fleet {f.fleet}: {'[green]fits[/green]' if f.fits else '[red]DOES NOT FIT[/red]'}, "
        f"weighted objective {f.objective:.5f}",
        ("pipeline", "weight", "load req/s", stages_col, "usage", "objective", "alone", "quota cost", "SLA"),
        left=("pipeline", stages_col, "usage"),
    )
    for o in f.pipelines:
        stages = "  ".join(f"{s.variant} b={s.batch} x{s.replicas}" for s in o.plan.stages)
        usage = " ".join(f"{pool}={used:g}" for pool, used in o.usage.items() if used)
        alone = "-" if o.alone_objective is None else f"{o.alone_objective:.5f}"
        cost = "-" if o.quota_cost is None else f"{o.quota_cost:.5f}"
        table.add_row(
            o.pipeline,
            f"{o.weight:g}",
            f"{o.load_rps:g}",
            escape(stages),
            usage,
            f"{o.plan.objective:.5f}",
            alone,
            cost,
            "met" if o.sla_met else "[red]MISSED[/red]",
        )
    out = console()
    out.print(table)
    pools = " | ".join(f"{p.pool} {p.used:g} of {p.quota:g}" for p in f.pools)
    out.print(
        f"quota: {pools} | {f.solver} {f.status} in {f.solve_time_s * 1000:.1f} ms ({f.front_points} plans)"
    )
    if f.message:
        out.print(f"[yellow]{escape(f.message)}[/yellow]")


def fleet_bench(report: dict) -> None:
    table = _table(
        f"fleet plan time under a binding quota ({report['quota_share']:.0%} of the independent optima), "
        f"loads x{', x'.join(f'{s:g}' for s in report['load_scales'])}",
        ("pipelines", "median ms", "max ms", "Pareto sets ms", "knapsack ms", "plans", "objective lost"),
    )
    for r in report["rows"]:
        table.add_row(
            str(r["pipelines"]),
            f"{r['median_s'] * 1000:.0f}",
            f"{r['max_s'] * 1000:.0f}",
            f"{r['median_fronts_s'] * 1000:.0f}",
            f"{r['median_knapsack_s'] * 1000:.0f}",
            f"{r['median_front_points']:g}",
            f"{r['median_objective_lost_to_quota']:.3f}",
        )
    out = console()
    out.print(table)
    if "brute_force_checked" in report:
        out.print(
            f"brute force: {report['brute_force_checked']} small fleets checked, "
            f"{report['mismatches']} mismatches"
        )


def demo_plans(plans) -> None:
    """Every example pipeline's plans side by side, a section per pipeline and load."""
    from rich.markup import escape

    stages_col = "stages: variant b=batch xreplicas"
    table = _table(
        "plans of the example pipelines (cost in the spec's units; accuracy = PAS unless the spec says)",
        ("pipeline", "load req/s", "policy", stages_col, "accuracy", "cost", "latency ms", "SLA ms", "ok"),
        left=("pipeline", "policy", stages_col),
    )
    last = None
    for p in plans:
        if last is not None and (p.pipeline, p.load_rps) != last:
            table.add_section()
        last = (p.pipeline, p.load_rps)
        stages = "  ".join(f"{s.variant} b={s.batch} x{s.replicas}" for s in p.stages)
        table.add_row(
            p.pipeline,
            f"{p.load_rps:g}",
            p.policy,
            stages,
            f"{p.accuracy:.4f}",
            f"{p.cost:g}",
            f"{p.latency_s * 1000:.1f}",
            f"{p.sla_s * 1000:.0f}",
            "yes" if p.feasible else f"[red]no: {escape(', '.join(p.binding))}[/red]",
        )
    console().print(table)


def manifests(docs: list[dict], *, spec: str, source: str, the_plan) -> tuple[str, str | None]:
    """The YAML `ipa manifests` writes, and the warning to print when the plan is infeasible: rendered
    all the same (it is what the controller would apply), but never without saying so."""
    import yaml

    header = f"# Rendered by `ipa manifests` from {spec} ({source}); plan {the_plan.plan_id}.\n"
    warning = None
    if not the_plan.feasible:
        why = " ".join(the_plan.message.split()) or "it cannot meet the SLA at this load"
        warning = f"the plan is INFEASIBLE: {why}"
        header += f"# WARNING: {warning}\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False), warning


def reconcile(result) -> None:
    from rich.table import Table

    title = f"{result.pipeline}: plan {result.plan_id}" + (
        " (dry run: nothing written)" if result.dry_run else ""
    )
    table = Table(title=title)
    for col in ("stage", "deployment", "action", "outcome", "on plan", "details"):
        table.add_column(col)
    for o in result.outcomes:
        table.add_row(o.stage, o.name, o.action, o.status, o.on, o.message)
    console().print(table)


# ---- benchmarks and profiles ------------------------------------------------------------------------
def solver_grid(report: dict, *, accuracy: str, solver: str) -> None:
    corner = "variants \\ stages"
    table = _table(
        f"solve time (ms, median over loads), accuracy={accuracy}, solver={solver}", (corner,), left=(corner,)
    )
    stages = sorted({r["stages"] for r in report["grid"]})
    for s in stages:
        table.add_column(str(s), justify="right")
    for v in sorted({r["variants"] for r in report["grid"]}):
        cells = {r["stages"]: r for r in report["grid"] if r["variants"] == v}
        table.add_row(str(v), *[f"{cells[s]['median_s'] * 1000:.1f}" for s in stages])
    out = console()
    out.print(table)
    out.print(
        f"max median {report['max_median_s'] * 1000:.1f} ms, max {report['max_max_s'] * 1000:.1f} ms; "
        f"brute force checked {report['brute_force_checked']} solves, mismatches {report['mismatches']}; "
        f"slower than IPA's published time at {report['slower_than_ipa_published'] or 'no point'}"
    )


@contextmanager
def profiling_progress(label: str, total: int, *, disable: bool) -> Iterator[Callable[[Any], None]]:
    """A transient progress bar on stderr while a sweep runs; yields the per-cell callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]profiling[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=disable,
    )
    with progress:
        task = progress.add_task(label, total=total)

        def on_cell(timing) -> None:
            progress.update(task, advance=1, description=f"{label}, batch {timing.batch}")

        yield on_cell


def profile(summary: dict) -> None:
    table = _table(
        f"{summary['profile_id']} ({summary['runtime']}, {summary['wall_s']} s)",
        ("batch", "p50 ms", "p95 ms", "p99 ms", "p99/p50", "CV", "calls", "req/s", "peak MiB"),
    )
    for c in summary["cells"]:
        table.add_row(
            str(c["batch"]),
            f"{c['p50_ms']:.2f}",
            f"{c['p95_ms']:.2f}",
            f"{c['p99_ms']:.2f}",
            f"{c['p99_over_p50']:.2f}",
            f"{c['cv']:.3f}" + (" (re)" if c["remeasured"] else ""),
            str(c["iters"]),
            f"{c['throughput_rps']:.1f}",
            f"{c['peak_memory_mb']:.0f}",
        )
    out = console()
    out.print(table)
    if "run_id" in summary:
        out.print(f"MLflow run {summary['run_id']} at {summary['tracking_uri']}")


def profiles_compare(report: dict, *, reference: str) -> None:
    table = _table(
        f"p50 agreement with {reference}",
        ("model", "dtype", "resources", "batch", "ours ms", "reference ms", "ratio"),
        left=("model", "dtype", "resources"),
    )
    for r in report["rows"]:
        table.add_row(
            r["model"],
            r["dtype"],
            r["resources"],
            str(r["batch"]),
            f"{r['p50_ms']:.2f}",
            f"{r['reference_p50_ms']:.2f}",
            f"{r['ratio']:.2f}",
        )
    out = console()
    out.print(table)
    out.print(f"{report['matched_cells']} cells, median ratio {report['median_ratio']}")


# ---- forecasts ----------------------------------------------------------------------------------------
def forecaster_selection(report: dict) -> None:
    splits = ", ".join(
        f"{s['train_days'][0]}-{s['train_days'][1]} -> {s['test_days'][0]}-{s['test_days'][1]}"
        for s in report["splits"]
    )
    table = _table(
        f"quantile loss at q{report['quantile']:g} across splits (train -> test days: {splits})",
        ("model", "loss mean", "loss worst", "mean rank", "under-prediction", "over-provisioning"),
        left=("model",),
    )
    for r in report["summary"]:
        table.add_row(
            r["model"],
            f"{r['quantile_loss_mean']:.4f}",
            f"{r['quantile_loss_worst']:.4f}",
            f"{r['mean_rank']:.1f}",
            f"{r['under_prediction_rate_mean']:.2%}",
            f"{r['mean_over_provisioning_mean']:+.1%}",
        )
    console().print(table)
    print(f"chosen: {report['chosen']}")
    for r in report.get("report", []):
        test, train = r["test_days"], r["train_days"]
        print(
            f"on days {test[0]}-{test[1]} (trained on {train[0]}-{train[1]}): "
            f"{r['model']} loss {r['quantile_loss']:.4f}, under-prediction {r['under_prediction_rate']:.2%}, "
            f"over-provisioning {r['mean_over_provisioning']:+.1%}"
        )


def forecast_rows(rows) -> None:
    table = _table(
        "forecast backtest (decide every 10 s, peak of the next 20 s)",
        (
            "model",
            "quantile/margin",
            "MAPE",
            "RMSE",
            "under-prediction",
            "over-provisioning",
            "under on rises",
            "quantile loss",
            "fit s",
            "predict us",
        ),
        left=("model",),
    )
    for r in rows:
        which = (
            f"q{r['quantile']:g}"
            if r.get("quantile")
            else (f"+{r['margin']:.0%}" if r.get("margin") else "point")
        )
        table.add_row(
            r["model"],
            which,
            f"{r['mape']:.1%}",
            f"{r['rmse']:.2f}",
            f"{r['under_prediction_rate']:.1%}",
            f"{r['mean_over_provisioning']:+.1%}",
            f"{r['under_prediction_rate_on_rises']:.0%} of {r['rises']}",
            "" if r.get("quantile_loss") is None else f"{r['quantile_loss']:.5f}",
            f"{r.get('fit_s', 0):.1f}",
            f"{r.get('predict_us_per_decision', 0):.1f}",
        )
    console().print(table)


def frontier(front: dict) -> None:
    table = _table(
        "over-provisioning needed for a given under-prediction rate (scaled on the test days)",
        ("forecasts", *(f"{u:.0%} under" for u in front["under_rates"])),
        left=("forecasts",),
    )
    for name, curve in [*front["curves"].items(), *front["oracles"].items()]:
        table.add_row(name, *(f"{c:+.1%}" for c in curve))
    console().print(table)


# ---- simulations --------------------------------------------------------------------------------------
def simulation(summaries: list[dict], *, title: str) -> None:
    table = _table(
        title,
        ("policy", "SLA violations", "p99 s", "accuracy", "cost", "reconfigs", "sim s", "solver s"),
        left=("policy",),
    )
    for s in summaries:
        table.add_row(
            s["policy"],
            f"{s['sla_violation_rate']:.2%}",
            str(s["p99_latency_s"]),
            f"{s['mean_accuracy']:.4f}",
            f"{s['mean_cost']:.2f}",
            str(s["reconfigurations"]),
            f"{s['wall_s']:.2f}",
            f"{s['solver_s']:.3f}",
        )
    console().print(table)


def demo_end_to_end(out: dict, *, home: Path, con) -> None:
    """The end-to-end demo's closing table and where to find what it wrote, on the demo's console."""
    table = _table(
        "video-cpu, bursty 20-minute window: the policies compared",
        ("policy", "SLA violations", "accuracy (PAS)", "cost (cores)", "reconfigurations"),
        left=("policy",),
    )
    for r in out["report"]["rows"]:
        table.add_row(
            r["policy"],
            f"{r['sla_violation_rate']:.2%}",
            f"{r['mean_accuracy']:.4f}",
            f"{r['mean_cost']:.2f}",
            str(r["reconfigurations"]),
        )
    con.print(table)
    timings = out.get("task_seconds") or {}
    if timings:
        con.print(
            "Airflow task times (mean s over the runs): "
            + ", ".join(f"{task} {sec:.1f}" for task, sec in timings.items())
        )
    bin_dir = Path(sys.executable).parent  # absolute: the commands work from any folder
    con.print(f"report and plots: {out['report_dir']}")
    con.print(f"MLflow store: {home / 'mlflow.db'} (profiles, decisions, model versions)")
    con.print(f"browse it:    {bin_dir / 'mlflow'} ui --backend-store-uri sqlite:///{home / 'mlflow.db'}")
    con.print(
        f"Airflow UI:   AIRFLOW_HOME={home / 'airflow'} AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True "
        f"{bin_dir / 'airflow'} api-server --port 8080   (then http://localhost:8080: the DAG runs above)"
    )
    con.print(f"demo took {out['wall_s']:.0f} s")
