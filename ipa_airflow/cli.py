"""The `ipa` command. Every subcommand that prints numbers also prints them as JSON with --json."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from . import argtypes as at
from .optimizer import POLICIES, SOLVERS, plan
from .pipelines import load_pipeline, missing_profiles
from .plans import Plan
from .profiles import ProfileError, ProfileSet, import_reference_jsonl
from .spec import PLAN_QUANTILES, SpecError, load_spec

REPO_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _console():
    from rich.console import Console

    # Wide enough for a plan table when the output is a file or a pipe (CI logs, `| tee`).
    return Console() if sys.stdout.isatty() else Console(width=160)


# ---- validate ---------------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    from .cluster.desired import load_template

    failed = 0
    results = []
    for path in args.specs:
        try:
            spec = load_spec(path)
            problems = []
            try:
                profiles = ProfileSet.load(spec.profile_paths(Path(path).parent))
                problems = missing_profiles(spec, profiles)
            except ProfileError as exc:
                problems = [("profiles", str(exc))]
            if problems:
                raise SpecError(str(path), problems)
            # The Deployment template renders only at reconcile time: read and check it now.
            load_template(spec, base=Path(path).parent)
            results.append({"spec": str(path), "ok": True, "errors": []})
            if not args.json:
                print(f"{path}: ok")
        except SpecError as exc:
            failed += 1
            errors = [{"path": p, "message": m} for p, m in exc.problems]
            results.append({"spec": str(path), "ok": False, "errors": errors})
            if not args.json:
                print(exc, file=sys.stderr)
    if args.json:
        _print_json(results if len(results) > 1 else results[0])
    return 1 if failed else 0


# ---- plan -------------------------------------------------------------------------------------------
def render_plan(p: Plan) -> None:
    from rich.table import Table

    console = _console()
    state = "[green]feasible[/green]" if p.feasible else "[red]INFEASIBLE[/red]"
    table = Table(title=f"{p.pipeline} @ {p.load_rps:g} req/s, policy {p.policy}: {state}")
    for col in (
        "stage",
        "variant",
        "shape",
        "batch",
        "replicas",
        "latency ms",
        "queue ms",
        "capacity req/s",
        "cost",
    ):
        table.add_column(col, justify="left" if col in ("stage", "variant", "shape") else "right")
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
    console.print(table)
    console.print(
        f"latency {p.latency_s * 1000:.1f} ms of {p.sla_s * 1000:.0f} ms SLA | accuracy {p.accuracy:.4f} | "
        f"cost {p.cost:g} | objective {p.objective:.5f} | binding {', '.join(p.binding) or '-'} | "
        f"{p.solver} {p.status} in {p.solve_time_s * 1000:.1f} ms"
    )
    if p.message:
        console.print(f"[yellow]{p.message}[/yellow]")


def cmd_plan(args) -> int:
    registry = _registry(args.tracking_uri) if args.tracking_uri else None
    pipeline = load_pipeline(args.spec, registry=registry, runtime=args.runtime)
    result = plan(pipeline.spec, pipeline.profiles, args.load, policy=args.policy, solver=args.solver)
    if args.out:
        Path(args.out).write_text(result.to_json())
    if args.json:
        _print_json(result.to_dict())
    else:
        render_plan(result)
    return 0


# ---- bench ------------------------------------------------------------------------------------------
def cmd_bench_solver(args) -> int:
    from .bench import solver_grid

    progress = None
    if not args.json and sys.stderr.isatty():

        def progress(point):
            print(
                f"  {point.stages} stages x {point.variants} variants: median "
                f"{sorted(point.times_s)[len(point.times_s) // 2] * 1000:.1f} ms",
                file=sys.stderr,
            )

    report = solver_grid.run(
        Path(args.profiles),
        accuracy=args.accuracy,
        solver=args.solver,
        max_stages=args.max_stages,
        max_variants=args.max_variants,
        repeats=args.repeats,
        heterogeneous=args.heterogeneous,
        on_point=progress,
    )
    if args.json:
        _print_json(report)
        return 0
    from rich.table import Table

    table = Table(title=f"solve time (ms, median over loads), accuracy={args.accuracy}, solver={args.solver}")
    table.add_column("variants \\ stages")
    stages = sorted({r["stages"] for r in report["grid"]})
    for s in stages:
        table.add_column(str(s), justify="right")
    for v in sorted({r["variants"] for r in report["grid"]}):
        cells = {r["stages"]: r for r in report["grid"] if r["variants"] == v}
        table.add_row(str(v), *[f"{cells[s]['median_s'] * 1000:.1f}" for s in stages])
    console = _console()
    console.print(table)
    console.print(
        f"max median {report['max_median_s'] * 1000:.1f} ms, max {report['max_max_s'] * 1000:.1f} ms; "
        f"brute force checked {report['brute_force_checked']} solves, mismatches {report['mismatches']}; "
        f"slower than IPA's published time at {report['slower_than_ipa_published'] or 'no point'}"
    )
    return 0


# ---- profile ----------------------------------------------------------------------------------------
def _registry(tracking_uri: str | None):
    from .registry import registry_for

    return registry_for(tracking_uri)


def _hardware_slug(device_name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")[:40] or "unknown"


def cmd_profile(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .profiling.filing import keep, keep_and_file, push_pending
    from .profiling.sweep import SweepRequest, parse_batch_sizes, profile_registered, profile_zoo, summarise
    from .profiling.torch_runner import environment, resolve_device

    batch_sizes = parse_batch_sizes(args.batch_sizes)
    out = Path(args.out) if args.out is not None else None  # checked writable by argparse, before any work
    registry = None if args.no_log and not args.model_uri else _registry(args.tracking_uri)
    # File what earlier runs could not; MLflow down fails now, before torch loads and measuring starts.
    if not args.no_log:
        push_pending(registry, say=(lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr)))
    device = resolve_device(args.device)
    hardware = args.hardware or _hardware_slug(
        (lambda e: e.get("gpu") or e.get("cpu", ""))(environment(device, args.threads, args.dtype))
    )
    request = SweepRequest(hardware, batch_sizes, device, args.threads, args.dtype)
    model_ref = name = None
    if args.model_uri:
        model_ref, name, version = registry.resolve_model_ref(args.model_uri)
    progress = Progress(
        TextColumn("[bold]profiling[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=args.json or not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task(f"{args.zoo or model_ref} on {device}", total=len(batch_sizes))

        def on_cell(timing):
            progress.update(
                task, advance=1, description=f"{args.zoo or model_ref} on {device}, batch {timing.batch}"
            )

        if args.zoo:
            result = profile_zoo(args.zoo, request, on_cell=on_cell)
        else:
            result = profile_registered(
                model_ref, args.name or name, request, tracking_uri=registry.tracking_uri, on_cell=on_cell
            )
    summary = summarise(result)
    # On disk first (--out, else the spool under IPA_HOME), then MLflow: a failure to file says where
    # the profile is kept and how to file it, instead of losing minutes of measurement.
    if not args.no_log:
        summary["run_id"] = keep_and_file(registry, result.profile, out=out).run_id
        summary["tracking_uri"] = registry.tracking_uri
    elif out is not None:
        keep(result.profile, out=out)
    if out is not None:
        summary["out"] = str(out)
    if args.json:
        _print_json(summary)
        return 0
    from rich.table import Table

    table = Table(title=f"{result.profile.id} ({summary['runtime']}, {summary['wall_s']} s)")
    for col in ("batch", "p50 ms", "p95 ms", "p99 ms", "p99/p50", "CV", "calls", "req/s", "peak MiB"):
        table.add_column(col, justify="right")
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
    console = _console()
    console.print(table)
    if "run_id" in summary:
        console.print(f"MLflow run {summary['run_id']} at {summary['tracking_uri']}")
    return 0


# ---- forecast ---------------------------------------------------------------------------------------
def _trace(args):
    from .forecasting.sources import read_trace

    return read_trace(args.trace, damping=args.damping)


def cmd_forecast_backtest(args) -> int:
    from .forecasting.backtesting.backtest import score, walk
    from .forecasting.backtesting.misses import MissProfile
    from .forecasting.catalog import forecaster
    from .forecasting.sources import named_days

    series = _trace(args)
    (train, train_start), (test, test_start) = (
        named_days(series, args.train_days),
        named_days(series, args.test_days),
    )
    if args.model_uri:
        from .forecasting.mlflow_store import load_forecaster

        fitted = load_forecaster(args.model_uri, tracking_uri=_registry(args.tracking_uri).tracking_uri)
    else:
        fitted = forecaster(args.model).fit(train, seed=args.seed, start_s=train_start)
    w = walk(fitted, train, test, quantile=args.quantile, test_start_s=test_start)
    misses = MissProfile.of(w)
    report = {
        "trace": str(args.trace),
        "damping": args.damping,
        "train_days": args.train_days,
        "test_days": args.test_days,
        **score(fitted, w, args.quantile).to_dict(),
        "misses": misses.to_dict(),
    }
    if args.plot:
        from .reports.forecast_plot import plot_misses

        which = "point" if args.quantile is None else f"q{args.quantile:g}"
        report["plot"] = str(plot_misses(w, misses, args.plot, title=f"{fitted.name} {which}"))
    if args.json:
        _print_json(report)
        return 0
    _render_forecast_rows([report])
    worst = ", ".join(f":{m:02d} ({rate:.0%})" for m, rate in misses.worst_minutes())
    print(f"most under-predicted minutes of the hour: {worst}, against {misses.overall:.1%} overall")
    if args.plot:
        print(f"where it missed: {report['plot']}")
    return 0


def _render_forecast_rows(rows) -> None:
    from rich.table import Table

    table = Table(title="forecast backtest (decide every 10 s, peak of the next 20 s)")
    for col in (
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
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
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
    _console().print(table)


def cmd_forecast_export(args) -> int:
    import datetime as dt
    import time

    from .forecasting.sources import (
        SECONDS_PER_DAY,
        LoadSourceError,
        PrometheusSource,
        check_writable,
        last_whole_days,
        write_trace,
    )

    check_writable(args.out)  # argparse checked the path; this tries it, before the fetch
    if args.days is not None:
        start, end = last_whole_days(time.time(), args.days)
    elif args.start is not None and args.end is not None:
        # Backtests take a trace to start on the hour (the clock-aware forecasters read the hour from it).
        start, end = args.start // 3600 * 3600, args.end
    else:
        raise ValueError("give --days N, or --start and --end (unix seconds)")
    source = PrometheusSource(args.prometheus, args.query)
    say = (lambda m: print(m, file=sys.stderr)) if not args.json else (lambda m: None)
    if args.start is not None and start != args.start:
        say(f"starting at {start}, the hour before {args.start}: backtests take a trace to start on the hour")

    reported_day = [-1]

    def progress(done_s: int, total_s: int) -> None:  # once a day read, and at the end
        if done_s // SECONDS_PER_DAY != reported_day[0] or done_s == total_s:
            reported_day[0] = done_s // SECONDS_PER_DAY
            say(f"  {done_s / SECONDS_PER_DAY:5.2f} of {total_s / SECONDS_PER_DAY:g} days read")

    def utc(t: int) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")

    say(f"reading `{args.query}` from {args.prometheus}, {utc(start)} to {utc(end)}")
    history = source.history(start, end, progress=progress)
    if history.covered == 0:
        raise LoadSourceError(
            f"Prometheus has no sample of `{args.query}` from {utc(start)} to {utc(end)}: check the query, "
            "that its retention (--storage.tsdb.retention.time) reaches back that far, and that it scrapes"
        )
    path = write_trace(args.out, history.rates)
    out = {
        "trace": str(path),
        "start": start,
        "end": end,
        "start_utc": utc(start),
        "seconds": len(history.rates),
        "covered": round(history.covered, 5),
        "mean_rps": round(float(history.rates.mean()), 3),
        "peak_rps": round(float(history.rates.max()), 3),
    }
    if args.json:
        _print_json(out)
        return 0
    print(
        f"wrote {path}: {out['seconds']} s from {out['start_utc']}, {history.covered:.1%} of seconds with a "
        f"sample, mean {out['mean_rps']} req/s, peak {out['peak_rps']} req/s"
    )
    if history.covered < 0.99:
        print("  seconds without a sample are written as 0; backtests will count them as no load")
    days = len(history.rates) // SECONDS_PER_DAY
    if days >= 2:
        cut = max(1, days * 5 // 7)
        print(
            f"next: ipa forecast compare --trace {path} --damping 1 "
            f"--train-days 0-{cut - 1} --test-days {cut}-{days - 1}"
        )
    return 0


def cmd_forecast_compare(args) -> int:
    from .forecasting.backtesting.comparison import compare
    from .forecasting.sources import parse_days

    series = _trace(args)
    report = compare(
        series,
        train_days=parse_days(args.train_days),
        test_days=parse_days(args.test_days),
        seed=args.seed,
        on_model=None if args.json else lambda m: print(f"fitting {m}", file=sys.stderr),
    )
    report.update({"trace": str(args.trace), "damping": args.damping})
    if args.plot:
        from .reports.forecast_plot import plot_frontier

        report["plot"] = str(plot_frontier(report, args.plot))
    if args.json:
        _print_json(report)
    else:
        _render_forecast_rows(report["rows"])
        _render_frontier(report["frontier"])
        if args.plot:
            print(f"trade-off curves: {report['plot']}")
    return 0


def _render_frontier(front: dict) -> None:
    from rich.table import Table

    table = Table(
        title="over-provisioning needed for a given under-prediction rate (scaled on the test days)"
    )
    table.add_column("forecasts", justify="left")
    for u in front["under_rates"]:
        table.add_column(f"{u:.0%} under", justify="right")
    for name, curve in [*front["curves"].items(), *front["oracles"].items()]:
        table.add_row(name, *(f"{c:+.1%}" for c in curve))
    _console().print(table)


def cmd_forecast_train(args) -> int:
    import tempfile

    from .forecasting.backtesting.backtest import score, walks
    from .forecasting.backtesting.misses import MissProfile
    from .forecasting.catalog import forecaster
    from .forecasting.mlflow_store import log_forecaster
    from .forecasting.sources import named_days
    from .registry.mlflow_profiles import check_reachable
    from .reports.forecast_plot import plot_misses
    from .settings import load_settings

    registry = _registry(args.tracking_uri)  # a tracking URI MLflow cannot use is refused first
    series = _trace(args)
    (train, train_start), (test, test_start) = (
        named_days(series, args.train_days),
        named_days(series, args.test_days),
    )
    check_reachable(registry.tracking_uri)  # before the fit, whose result would have nowhere to go
    fitted = forecaster(args.model).fit(train, seed=args.seed, start_s=train_start)
    metrics = {}
    walked = walks(fitted, train, test, quantiles=(None, 0.9, 0.95, 0.99), test_start_s=test_start)
    for q, w in walked.items():
        metrics.update(score(fitted, w, q).metrics())
    # Where the q0.95 forecasts missed goes beside the metrics, for people browsing the run in MLflow.
    misses = MissProfile.of(walked[0.95])
    with tempfile.TemporaryDirectory(prefix="ipa-train-") as tmp:
        summary = Path(tmp) / "backtest_misses.json"
        summary.write_text(json.dumps(misses.to_dict(), indent=1))
        plot = plot_misses(
            walked[0.95], misses, Path(tmp) / "backtest_misses.png", title=f"{fitted.name} q0.95"
        )
        run_id, version = log_forecaster(
            fitted,
            tracking_uri=registry.tracking_uri,
            experiment=load_settings().mlflow.forecasts_experiment,
            registered_name=args.registered_name,
            metrics=metrics,
            train_series=train,
            tags={
                "ipa.trace": str(args.trace),
                "ipa.train_days": args.train_days,
                "ipa.test_days": args.test_days,
            },
            artifacts=(summary, plot),
        )
    out = {
        "model": args.model,
        "run_id": run_id,
        "registered_model": args.registered_name,
        "version": version,
        "model_uri": f"models:/{args.registered_name}/{version}",
        "fit_s": round(fitted.fit_s, 2),
        "metrics": {k: round(v, 5) for k, v in metrics.items()},
    }
    if args.json:
        _print_json(out)
    else:
        print(
            f"registered {out['model_uri']} (run {run_id}); q0.95 under-prediction "
            f"{metrics['q095_under_prediction_rate']:.1%}, "
            f"over-provisioning {metrics['q095_mean_over_provisioning']:+.1%}"
        )
    return 0


# ---- reconcile --------------------------------------------------------------------------------------
def cluster_backend(kind: str, *, kubeconfig: str | None = None, state_file: str | None = None):
    if kind == "kubernetes":
        from .cluster.kubernetes_backend import KubernetesBackend

        return KubernetesBackend.from_config(kubeconfig=kubeconfig)
    from .cluster.simulated import simulated_cluster

    return simulated_cluster(state_file)


def cmd_reconcile(args) -> int:
    from .cluster.reconcile import reconcile
    from .plans import load_plan

    pipeline = load_pipeline(args.spec)
    the_plan = load_plan(args.plan, pipeline.spec)
    backend = cluster_backend(args.backend, kubeconfig=args.kubeconfig, state_file=args.state_file)
    result = reconcile(
        the_plan,
        pipeline.spec,
        backend,
        dry_run=args.dry_run,
        base=Path(args.spec).parent,
        lock_wait_s=args.lock_wait,
    )
    if args.json:
        _print_json(result.to_dict())
    else:
        from rich.table import Table

        title = f"{result.pipeline}: plan {result.plan_id}" + (
            " (dry run: nothing written)" if result.dry_run else ""
        )
        table = Table(title=title)
        for col in ("stage", "deployment", "action", "outcome", "on plan", "details"):
            table.add_column(col)
        for o in result.outcomes:
            table.add_row(o.stage, o.name, o.action, o.status, o.on, o.message)
        _console().print(table)
    if not result.ok:
        print(f"error: {result.summary()}", file=sys.stderr)
    return 0 if result.ok else 1


def cmd_manifests(args) -> int:
    """The Deployments a plan renders to, as YAML for kubectl or a GitOps repository."""
    import yaml

    from .cluster.desired import desired_state
    from .plans import load_plan

    pipeline = load_pipeline(args.spec)
    if args.plan:
        the_plan = load_plan(args.plan)
    else:
        the_plan = plan(pipeline.spec, pipeline.profiles, args.load, policy=args.policy)
    docs = desired_state(the_plan, pipeline.spec, base=Path(args.spec).parent)
    source = f"plan {args.plan}" if args.plan else f"{args.policy} at {args.load:g} req/s"
    header = f"# Rendered by `ipa manifests` from {args.spec} ({source}); plan {the_plan.plan_id}.\n"
    if not the_plan.feasible:
        # Rendered all the same (it is what the controller would apply), but never without saying so.
        why = " ".join(the_plan.message.split()) or "it cannot meet the SLA at this load"
        print(f"warning: the plan is INFEASIBLE: {why}", file=sys.stderr)
        header += f"# WARNING: the plan is INFEASIBLE: {why}\n"
    text = header + yaml.safe_dump_all(docs, sort_keys=False)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{len(docs)} Deployments written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# ---- simulate ---------------------------------------------------------------------------------------
def _check_window(trace, start: int, duration: int, path) -> None:
    """A window must lie in the trace (else the simulator replays nothing and reports a perfect run), and
    the trace must hold a day for the forecaster, which trains on its first days."""
    from .forecasting.sources import SECONDS_PER_DAY

    n = len(trace)
    if start + duration > n:
        latest = f"--start {n - duration} at the latest" if duration <= n else "a shorter --duration"
        raise ValueError(
            f"the window --start {start} --duration {duration} ends at second {start + duration}, after the "
            f"end of trace {path} ({n} s, {n / SECONDS_PER_DAY:.2f} days): give {latest}"
        )
    if n < SECONDS_PER_DAY:
        raise ValueError(
            f"trace {path} has {n} s; the forecaster trains on the trace's first days, so it needs at least "
            f"one whole day ({SECONDS_PER_DAY} s)"
        )


def _spec_overrides(args) -> dict:
    out = {"quantile": args.quantile, "interval_s": args.interval, "latency_headroom": args.latency_headroom}
    return {k: v for k, v in out.items() if v is not None}


def cmd_simulate(args) -> int:
    from .forecasting.sources import read_trace
    from .settings import default_trace
    from .simulation import evaluation as ev

    trace = read_trace(args.trace or default_trace(), damping=args.damping)
    if args.target == "patterns":
        found = ev.test_patterns(trace)
        if args.json:
            _print_json({k: v.to_dict() for k, v in found.items()})
        else:
            for p in found.values():
                print(
                    f"{p.name:12s} pieces {list(p.pieces)}  mean {p.mean_rps:.1f}  10-s min {p.min_rps:.1f}  "
                    f"max {p.max_rps:.1f} req/s"
                )
        return 0
    say = (lambda m: print(m, file=sys.stderr)) if not args.json else None
    if args.target == "evaluate":
        specs = [
            str(s)
            for part in args.pipelines.split(",")
            for s in (sorted(Path(part).glob("*.yaml")) if Path(part).is_dir() else [Path(part)])
        ]
        if not specs:
            raise ValueError(f"--pipelines {args.pipelines}: no pipeline spec (*.yaml) there")
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise ValueError(f"--out {args.out} is a file; the report needs a folder")
        report = ev.evaluate(
            specs,
            trace,
            Path(args.out),
            seed=args.seed,
            model=args.forecaster,
            progress=say,
            policies=args.policies.split(","),
            overrides=_spec_overrides(args),
            random_windows=args.random_windows,
        )
        if args.json:
            _print_json(report)
        else:
            print((Path(args.out) / "evaluation.md").read_text())
            print(f"report, JSON and plots in {args.out}")
        return 0
    if args.pattern:
        pieces = ev.test_patterns(trace)[args.pattern].pieces
    elif args.start is not None:
        _check_window(trace, args.start, args.duration, args.trace or default_trace())
        pieces = ((args.start, args.duration),)
        if say and ev.trains_on(trace, args.start):
            say(
                f"note: second {args.start} lies in days {ev.TRAIN_DAYS[0]}-{ev.TRAIN_DAYS[1]}, which the "
                "forecaster trains on: its forecasts have seen this load, so they look better than they will"
            )
    else:
        raise ValueError("give --pattern NAME or --start SECOND (with --duration)")
    ev.check_cases([args.target], args.policy.split(","))
    if say:
        say(f"fitting the {args.forecaster} forecaster on days 0-9 of the trace")
    fitted = ev.fit_forecaster(trace, model=args.forecaster, seed=args.seed)
    results = {}
    for policy in args.policy.split(","):
        results[policy] = ev.run_case(
            args.target,
            trace,
            pieces,
            policy,
            fitted=fitted,
            seed=args.seed,
            overrides=_spec_overrides(args),
        )
    if args.plot:
        ev.plot_case(results, f"{Path(args.target).stem}: {args.pattern or pieces}", Path(args.plot))
    summaries = [r.summary() for r in results.values()]
    if args.json:
        _print_json(summaries if len(summaries) > 1 else summaries[0])
    else:
        from rich.table import Table

        table = Table(title=f"{Path(args.target).stem}, {args.pattern or pieces}")
        for col in (
            "policy",
            "SLA violations",
            "p99 s",
            "accuracy",
            "cost",
            "reconfigs",
            "sim s",
            "solver s",
        ):
            table.add_column(col, justify="left" if col == "policy" else "right")
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
        _console().print(table)
    return 0


# ---- demo -------------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from . import demo

    if args.end_to_end:
        return _demo_e2e(args)

    specs = sorted(Path(args.pipelines).glob("*.yaml"))
    if not specs:
        raise ValueError(f"no pipeline specs (*.yaml) in {args.pipelines}")
    plans = demo.run_plans(specs)
    if args.json:
        _print_json([p.to_dict() for p in plans])
    else:
        demo.render(plans, _console())
    return 0


def _demo_e2e(args) -> int:
    from rich.table import Table

    from . import demo_e2e

    console = _console()
    out = demo_e2e.run(Path(args.home), console)
    table = Table(title="video-cpu, bursty 20-minute window: the policies compared")
    for col in ("policy", "SLA violations", "accuracy (PAS)", "cost (cores)", "reconfigurations"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in out["report"]["rows"]:
        table.add_row(
            r["policy"],
            f"{r['sla_violation_rate']:.2%}",
            f"{r['mean_accuracy']:.4f}",
            f"{r['mean_cost']:.2f}",
            str(r["reconfigurations"]),
        )
    console.print(table)
    home = Path(args.home).resolve()
    console.print(f"report and plots: {out['report_dir']}")
    console.print(f"MLflow store: {home / 'mlflow.db'} (profiles, decisions, model versions)")
    console.print(f"browse it:    .venv/bin/mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'}")
    console.print(f"demo took {out['wall_s']:.0f} s")
    return (
        0
        if out["profiling_state"].endswith("success")
        and all(s.endswith("success") for _, s in out["decisions"])
        else 1
    )


# ---- profiles ---------------------------------------------------------------------------------------
def cmd_profiles_import(args) -> int:
    out = Path(args.out)
    try:
        profiles = import_reference_jsonl(
            args.file, hardware=args.hardware, source=args.source or str(args.file)
        )
    except OSError as exc:
        raise ProfileError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, IndexError, EOFError) as exc:
        raise ProfileError(
            f"{args.file} is not a torchvision profile dump (JSON lines: the environment, then one cell "
            f"per line): {type(exc).__name__} {exc}"
        ) from None
    out.write_text(json.dumps(profiles.to_dict(), indent=1))
    print(f"wrote {len(profiles)} profiles to {out}")
    return 0


def cmd_profiles_push(args) -> int:
    """File profiles in MLflow: the given files, or every one `ipa profile` kept because MLflow failed."""
    from .profiling.filing import pending, pending_dir, push

    files = args.files or pending()
    if not files:
        if args.json:
            _print_json({"filed": [], "failed": [], "left": [], "unreachable": ""})
        else:
            print(f"nothing to file: no pending profiles in {pending_dir()}")
        return 0
    registry = _registry(args.tracking_uri)
    report = push(registry, files)
    if args.json:
        _print_json({**report.to_dict(), "tracking_uri": registry.tracking_uri})
    else:
        for f in report.filed:
            print(f"filed {f['profile_id']} from {f['file']}: MLflow run {f['run_id']}")
        for f in report.failed:
            print(f"error: {f['file']} not filed: {f['error']}", file=sys.stderr)
        if report.left:
            print(
                f"not tried ({len(report.left)}, MLflow stopped answering): {', '.join(report.left)}",
                file=sys.stderr,
            )
    return 0 if not (report.failed or report.left) else 1


def cmd_profiles_compare(args) -> int:
    from .reports.compare import compare

    report = compare(ProfileSet.load(args.ours), ProfileSet.load([args.reference]))
    if args.json:
        _print_json(report)
        return 0
    from rich.table import Table

    table = Table(title=f"p50 agreement with {args.reference}")
    for col in ("model", "dtype", "resources", "batch", "ours ms", "reference ms", "ratio"):
        table.add_column(col, justify="left" if col in ("model", "dtype", "resources") else "right")
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
    console = _console()
    console.print(table)
    console.print(f"{report['matched_cells']} cells, median ratio {report['median_ratio']}")
    return 0


# ---- selfcheck --------------------------------------------------------------------------------------
def cmd_selfcheck(args) -> int:
    """Run the bad-input corpus; exit 1 when any case is a traceback, silent, hang, unclear or refused."""
    import time

    from . import selfcheck
    from .selfcheck.report import render

    cases = selfcheck.select(selfcheck.load_cases(), args.case)
    last = [time.perf_counter()]

    def progress(i: int, n: int, row) -> None:  # on stderr, every 5 s and for each slow case
        now = time.perf_counter()
        if row.outcome == "hang" or row.seconds >= 5 or now - last[0] >= 5:
            last[0] = now
            print(
                f"  selfcheck: {i}/{n} done; {row.id}: {row.outcome} in {row.seconds:.1f} s", file=sys.stderr
            )

    report = selfcheck.run_cases(cases, timeout_s=args.timeout, on_row=progress)
    if args.json:
        _print_json(report.to_dict())
    else:
        render(report, _console())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipa", description="Inference Pipeline Adaptation for Airflow")
    parser.add_argument("--version", action="version", version=f"ipa-airflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check pipeline specs (schema and profiles)")
    p.add_argument("specs", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="solve the program for one load")
    p.add_argument("spec")
    p.add_argument("--load", type=at.load_rps, required=True, help="predicted load, requests per second")
    p.add_argument("--policy", choices=list(POLICIES), default="ipa")
    p.add_argument("--solver", choices=list(SOLVERS), default="auto")
    p.add_argument("--out", type=at.out_file, help="also write the plan as JSON to this file")
    p.add_argument(
        "--tracking-uri", type=at.tracking_uri, help="read profiles the spec's files lack from this MLflow"
    )
    p.add_argument("--runtime", help="refuse MLflow profiles measured on another runtime, e.g. torch==2.14.1")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    p = bench.add_parser("solver", help="solve time over the IPA paper's grid, checked against brute force")
    p.add_argument("--accuracy", choices=["sum", "average", "product"], default="sum")
    p.add_argument("--solver", choices=list(SOLVERS), default="auto")
    p.add_argument("--profiles", default=str(REPO_PROFILES / "h100_torchvision.json"))
    p.add_argument("--max-stages", type=at.bench_stages, default=9)
    p.add_argument("--max-variants", type=at.bench_variants, default=9)
    p.add_argument(
        "--repeats", type=at.repeats, default=1, help="solves per load (more gives steadier medians)"
    )
    p.add_argument("--heterogeneous", action="store_true", help="alternate fp16/fp32 stages (no symmetry)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_solver)

    p = sub.add_parser("profile", help="profile a zoo model or a registered MLflow model version")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--zoo", help="a zoo model name, e.g. resnet18")
    which.add_argument(
        "--model-uri", help="a registered model version: models:/name/version or models:/name@alias"
    )
    p.add_argument(
        "--name", type=at.name, help="profile name for a registered model (default: the registered name)"
    )
    p.add_argument("--batch-sizes", default="1,2,4,8")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=at.threads, default=1, help="CPU threads (cores one replica gets)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    p.add_argument(
        "--hardware", type=at.name, help="the hardware name specs use (default: from the device name)"
    )
    p.add_argument(
        "--tracking-uri",
        type=at.tracking_uri,
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or .ipa/mlflow.db)",
    )
    p.add_argument("--no-log", action="store_true", help="do not log the profile to MLflow")
    p.add_argument("--out", type=at.out_file, help="also write the profile as a profile file (JSON)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile)

    forecast = sub.add_parser("forecast", help="load forecasting").add_subparsers(
        dest="forecast", required=True
    )

    def trace_args(p):
        p.add_argument("--trace", required=True, help="per-second counts, one per line (.txt or .txt.gz)")
        p.add_argument(
            "--damping", type=at.damping, default=8.0, help="divide every count by this (the paper: 8)"
        )
        p.add_argument("--train-days", type=at.days, default="0-9")
        p.add_argument("--test-days", type=at.days, default="10-13")
        p.add_argument("--seed", type=at.seed, default=0)
        p.add_argument("--json", action="store_true")

    from .forecasting.catalog import FORECASTERS
    from .forecasting.mlflow_store import REGISTRABLE
    from .forecasting.sources import PrometheusSource

    p = forecast.add_parser("backtest", help="walk a trace at the paper's cadence and score one forecaster")
    trace_args(p)
    p.add_argument("--model", choices=list(FORECASTERS), default="lstm-quantile")
    p.add_argument("--model-uri", help="backtest a registered forecaster instead of fitting one")
    p.add_argument("--tracking-uri", type=at.tracking_uri)
    p.add_argument(
        "--quantile", type=at.quantile, help="score an upper quantile (e.g. 0.95) instead of the point"
    )
    p.add_argument(
        "--plot",
        type=at.out_file_in_new_folder,
        help="write a PNG of where it missed: its worst hour, by minute and by hour",
    )
    p.set_defaults(func=cmd_forecast_backtest)

    p = forecast.add_parser(
        "export", help="write a pipeline's per-second request rate from Prometheus as a trace file"
    )
    p.add_argument("--prometheus", required=True, help="the server's URL, e.g. http://prometheus:9090")
    p.add_argument("--query", default=PrometheusSource.query, help="PromQL for the pipeline's rate (req/s)")
    p.add_argument("--days", type=at.export_days, help="the last N whole UTC days")
    p.add_argument("--start", type=at.unix_s, help="or: the first second (unix time; taken back to the hour)")
    p.add_argument("--end", type=at.unix_s, help="and the second after the last (unix time)")
    p.add_argument(
        "--out",
        type=at.out_file_in_new_folder,
        required=True,
        help="the trace file to write (.txt or .txt.gz)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_forecast_export)

    p = forecast.add_parser("compare", help="every forecaster, point and quantiles, on the same days")
    trace_args(p)
    p.add_argument(
        "--plot",
        type=at.out_file_in_new_folder,
        help="write the trade-off curves (under-prediction against over-provisioning)",
    )
    p.set_defaults(func=cmd_forecast_compare)

    p = forecast.add_parser("train", help="train a forecaster and register it in MLflow with its backtest")
    trace_args(p)
    p.add_argument("--model", choices=list(REGISTRABLE), default="lstm-quantile")
    p.add_argument("--registered-name", type=at.name, default="ipa-load-forecaster")
    p.add_argument("--tracking-uri", type=at.tracking_uri)
    p.set_defaults(func=cmd_forecast_train)

    p = sub.add_parser("manifests", help="render the Deployments of a plan as YAML, without a cluster")
    p.add_argument("spec")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--plan", help="a plan written by `ipa plan --out`")
    which.add_argument("--load", type=at.load_rps, help="plan for this load (req/s) first")
    p.add_argument("--policy", default="ipa", choices=list(POLICIES))
    p.add_argument("--out", type=at.out_file, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_manifests)

    p = sub.add_parser("reconcile", help="apply a plan to the cluster (or preview it with --dry-run)")
    p.add_argument("spec")
    p.add_argument("--plan", required=True, help="a plan written by `ipa plan --out`")
    p.add_argument("--dry-run", action="store_true", help="diff and server-side validate, write nothing")
    p.add_argument("--backend", choices=["simulated", "kubernetes"], default="simulated")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config or in-cluster)")
    p.add_argument("--state-file", help="simulated backend: where its cluster state lives")
    p.add_argument(
        "--lock-wait",
        type=at.wait_s,
        default=30.0,
        metavar="S",
        help="wait up to S seconds for another reconcile of the same pipeline to finish (default 30)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser(
        "simulate",
        help="replay a trace through a pipeline under adaptation policies",
        description="ipa simulate SPEC --pattern NAME | ipa simulate patterns | ipa simulate evaluate",
    )
    p.add_argument("target", help="a pipeline spec, or 'patterns', or 'evaluate'")
    p.add_argument("--trace", help="per-second counts (default: the shipped Twitter trace)")
    p.add_argument("--damping", type=at.damping, default=8.0)
    p.add_argument("--pattern", choices=["bursty", "steady-low", "steady-high", "fluctuating"])
    p.add_argument("--start", type=at.second, help="first second of the window")
    p.add_argument("--duration", type=at.window_s, default=1200, help="seconds of the window")
    sim_policies = ",".join([*POLICIES, "hpa"])
    p.add_argument("--policy", default="ipa", help=f"{sim_policies} (comma-separated)")
    p.add_argument("--policies", default=sim_policies, help="evaluate: the policies")
    p.add_argument("--forecaster", choices=list(FORECASTERS), default="lstm-quantile")
    p.add_argument(
        "--quantile",
        type=float,
        choices=PLAN_QUANTILES,
        help="provision for this forecast quantile instead of each spec's",
    )
    p.add_argument(
        "--interval",
        type=at.interval_s,
        help="decide every this many seconds instead of each spec's adaptation.interval_s",
    )
    p.add_argument(
        "--latency-headroom",
        type=at.headroom,
        help="keep this share of the SLA free when planning (e.g. 0.2) instead of each spec's "
        "limits.latency_headroom",
    )
    p.add_argument(
        "--random-windows",
        type=at.random_windows,
        default=0,
        help="evaluate: also summarise every policy over N random windows of the test days",
    )
    p.add_argument(
        "--pipelines",
        default=str(REPO_PROFILES / "pipelines"),
        help="evaluate: a folder of specs, or spec files separated by commas",
    )
    p.add_argument("--out", default="reports/simulation", help="evaluate: report folder")
    p.add_argument("--seed", type=at.seed, default=0)
    p.add_argument("--plot", type=at.out_file, help="write a PNG of load, accuracy, cost and p99 over time")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="the main job on embedded defaults")
    p.add_argument("--pipelines", default=str(REPO_PROFILES / "pipelines"))
    p.add_argument(
        "--end-to-end",
        action="store_true",
        help="profile into MLflow, run the DAGs through Airflow, re-profile, compare policies",
    )
    p.add_argument("--home", default=".ipa", help="--end-to-end: where MLflow, Airflow and the report live")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    profiles = sub.add_parser("profiles", help="profile files").add_subparsers(dest="profiles", required=True)
    p = profiles.add_parser(
        "import-reference", help="convert a torchvision profile dump (JSONL) to a profile file"
    )
    p.add_argument("file")
    p.add_argument(
        "--hardware", type=at.name, required=True, help="hardware name the specs will use, e.g. h100"
    )
    p.add_argument("--source", help="provenance text (default: the file name)")
    p.add_argument("--out", type=at.out_file, required=True)
    p.set_defaults(func=cmd_profiles_import)
    p = profiles.add_parser("compare", help="ratio of p50 latencies against reference profiles")
    p.add_argument("ours", nargs="+", help="profile files")
    p.add_argument("--reference", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profiles_compare)
    p = profiles.add_parser(
        "push", help="file profiles in MLflow (default: every one `ipa profile` kept when MLflow failed)"
    )
    p.add_argument(
        "files", nargs="*", help="profile files written by `ipa profile` (default: the pending ones)"
    )
    p.add_argument(
        "--tracking-uri",
        type=at.tracking_uri,
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or .ipa/mlflow.db)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profiles_push)

    p = sub.add_parser(
        "selfcheck",
        help="run the bad-input corpus: every case must end in a clear error (or succeed, if good)",
    )
    p.add_argument("--case", help="run only the case with this id, or those whose id this regex finds")
    p.add_argument(
        "--timeout", type=at.timeout_s, help="seconds each case may take (default: each case's timeout_s)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_selfcheck)
    return parser


# Errors about the user's input or environment: `error: ...`, exit 2. OSError is one (a file that cannot
# be read or written, a server that does not answer): its message names the file or the address.
USER_ERRORS = (SpecError, ProfileError, ValueError, RuntimeError, KeyError, OSError)
# Subclasses of those that are bugs, not input: shown as internal errors.
BUGS = (RecursionError, NotImplementedError)
INTERNAL_ERROR = 3  # `ipa selfcheck` counts this exit status as a traceback


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, USER_ERRORS) and not isinstance(exc, BUGS):
            print(f"error: {_user_error_text(exc)}", file=sys.stderr)
            return 2
        # A bug: no traceback for the user, but never hidden either (exit 3, the type, and how to see it).
        if os.environ.get("IPA_DEBUG", "") not in ("", "0"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(
            "  this is a bug in ipa, not in your input: run again with IPA_DEBUG=1 for the traceback, "
            "and report it",
            file=sys.stderr,
        )
        return INTERNAL_ERROR


def _user_error_text(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]  # str(KeyError) quotes its message
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
