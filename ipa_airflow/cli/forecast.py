"""`ipa forecast backtest|export|compare|train`: load forecasters scored on a trace, a trace from
Prometheus, and a forecaster trained and registered in MLflow."""

from __future__ import annotations

import sys

from .. import argtypes as at
from . import render


def _trace_source_args(p) -> None:
    p.add_argument("--trace", required=True, help="per-second counts, one per line (.txt or .txt.gz)")
    p.add_argument(
        "--damping", type=at.damping, default=8.0, help="divide every count by this (the paper: 8)"
    )


def _trace_args(p) -> None:
    _trace_source_args(p)
    p.add_argument("--train-days", type=at.days, default="0-9")
    p.add_argument("--test-days", type=at.days, default="10-13")
    p.add_argument("--seed", type=at.seed, default=0)
    p.add_argument("--json", action="store_true")


def add_forecast(sub) -> None:
    from ..forecasting.catalog import DEFAULT_FORECASTER, FORECASTERS
    from ..forecasting.mlflow_store import REGISTRABLE
    from ..forecasting.sources import PrometheusSource
    from ..spec import PLAN_QUANTILES

    forecast = sub.add_parser("forecast", help="load forecasting").add_subparsers(
        dest="forecast", required=True
    )
    p = forecast.add_parser("backtest", help="walk a trace at the paper's cadence and score one forecaster")
    _trace_args(p)
    p.add_argument("--model", choices=list(FORECASTERS), default=DEFAULT_FORECASTER)
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
    p.add_argument(
        "--query",
        default=PrometheusSource.query,
        help="PromQL for the pipeline's rate in req/s (default: MLServer's requests to --spec's first stage)",
    )
    p.add_argument("--spec", help="the pipeline whose load to read: fills the query's {pipeline} and {stage}")
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
    _trace_args(p)
    p.add_argument(
        "--plot",
        type=at.out_file_in_new_folder,
        help="write the trade-off curves (under-prediction against over-provisioning)",
    )
    p.set_defaults(func=cmd_forecast_compare)

    p = forecast.add_parser(
        "select",
        help="choose a forecaster by its quantile loss on held-out days, across rolling origins",
        description="Each origin day D is a split: train on days 0..D-1, score days D..D+span-1. The model "
        "with the lowest mean quantile loss at --quantile is chosen, then scored beside --baseline on "
        "--report-days, which no split touched.",
    )
    _trace_source_args(p)
    p.add_argument("--origins", default="4,6,8", help="origin days, comma-separated (default 4,6,8)")
    p.add_argument("--test-span", type=at.export_days, default=2, help="days each split scores (default 2)")
    p.add_argument(
        "--quantile", type=float, choices=PLAN_QUANTILES, default=0.99, help="the planner's quantile"
    )
    p.add_argument(
        "--models", default=",".join(FORECASTERS), help="forecasters, comma-separated (default: all)"
    )
    p.add_argument(
        "--report-days", type=at.days, help="score the chosen one and --baseline here (e.g. 10-13)"
    )
    p.add_argument(
        "--baseline",
        choices=list(FORECASTERS),
        default=DEFAULT_FORECASTER,
        help="the forecaster to compare the chosen one with (default: the shipped default)",
    )
    p.add_argument("--seed", type=at.seed, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_forecast_select)

    p = forecast.add_parser("train", help="train a forecaster and register it in MLflow with its backtest")
    _trace_args(p)
    p.add_argument("--model", choices=list(REGISTRABLE), default=DEFAULT_FORECASTER)
    p.add_argument("--registered-name", type=at.name, default="ipa-load-forecaster")
    p.add_argument("--tracking-uri", type=at.tracking_uri)
    p.set_defaults(func=cmd_forecast_train)


def _say(args):
    return (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))


def _tracking_uri(uri: str | None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the embedded store; refused now if MLflow cannot
    use it."""
    from ..registry import registry_for

    return registry_for(uri).tracking_uri


def cmd_forecast_backtest(args) -> int:
    from ..forecasting.jobs import backtest_days
    from ..forecasting.sources import read_trace

    series = read_trace(args.trace, damping=args.damping)
    done = backtest_days(
        series,
        train_days=args.train_days,
        test_days=args.test_days,
        model=args.model,
        model_uri=args.model_uri,
        tracking_uri=args.tracking_uri,
        seed=args.seed,
        quantile=args.quantile,
    )
    report = {
        "trace": str(args.trace),
        "damping": args.damping,
        "train_days": args.train_days,
        "test_days": args.test_days,
        **done.result.to_dict(),
        "misses": done.misses.to_dict(),
    }
    if args.plot:
        from ..reports.forecast_plot import plot_misses

        which = "point" if args.quantile is None else f"q{args.quantile:g}"
        report["plot"] = str(
            plot_misses(done.walk, done.misses, args.plot, title=f"{done.fitted.name} {which}")
        )
    if args.json:
        render.print_json(report)
        return 0
    render.forecast_rows([report])
    worst = ", ".join(f":{m:02d} ({rate:.0%})" for m, rate in done.misses.worst_minutes())
    print(f"most under-predicted minutes of the hour: {worst}, against {done.misses.overall:.1%} overall")
    if args.plot:
        print(f"where it missed: {report['plot']}")
    return 0


def cmd_forecast_export(args) -> int:
    import time

    from ..forecasting.jobs import export_trace, export_window, utc
    from ..forecasting.sources import SECONDS_PER_DAY, PrometheusSource, check_writable

    check_writable(args.out)  # argparse checked the path; this tries it, before the fetch
    start, end = export_window(time.time(), days=args.days, start=args.start, end=args.end)
    source = PrometheusSource(args.prometheus, args.query)
    if args.spec:
        from ..spec import load_spec

        source = source.for_pipeline(load_spec(args.spec))
    say = _say(args)
    if args.start is not None and start != args.start:
        say(f"starting at {start}, the hour before {args.start}: backtests take a trace to start on the hour")

    reported_day = [-1]

    def progress(done_s: int, total_s: int) -> None:  # once a day read, and at the end
        if done_s // SECONDS_PER_DAY != reported_day[0] or done_s == total_s:
            reported_day[0] = done_s // SECONDS_PER_DAY
            say(f"  {done_s / SECONDS_PER_DAY:5.2f} of {total_s / SECONDS_PER_DAY:g} days read")

    say(f"reading `{args.query}` from {args.prometheus}, {utc(start)} to {utc(end)}")
    exported = export_trace(source, args.out, start, end, progress=progress)
    out = exported.to_dict()
    if args.json:
        render.print_json(out)
        return 0
    print(
        f"wrote {exported.path}: {out['seconds']} s from {out['start_utc']}, {exported.covered:.1%} of "
        f"seconds with a sample, mean {out['mean_rps']} req/s, peak {out['peak_rps']} req/s"
    )
    if exported.covered < 0.99:
        print("  seconds without a sample are written as 0; backtests will count them as no load")
    days = len(exported.rates) // SECONDS_PER_DAY
    if days >= 2:
        cut = max(1, days * 5 // 7)
        print(
            f"next: ipa forecast compare --trace {exported.path} --damping 1 "
            f"--train-days 0-{cut - 1} --test-days {cut}-{days - 1}"
        )
    return 0


def cmd_forecast_compare(args) -> int:
    from ..forecasting.backtesting.comparison import compare
    from ..forecasting.sources import parse_days, read_trace

    series = read_trace(args.trace, damping=args.damping)
    report = compare(
        series,
        train_days=parse_days(args.train_days),
        test_days=parse_days(args.test_days),
        seed=args.seed,
        on_model=None if args.json else lambda m: print(f"fitting {m}", file=sys.stderr),
    )
    report.update({"trace": str(args.trace), "damping": args.damping})
    if args.plot:
        from ..reports.forecast_plot import plot_frontier

        report["plot"] = str(plot_frontier(report, args.plot))
    if args.json:
        render.print_json(report)
    else:
        render.forecast_rows(report["rows"])
        render.frontier(report["frontier"])
        if args.plot:
            print(f"trade-off curves: {report['plot']}")
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_forecast_select(args) -> int:
    from ..forecasting.backtesting.selection import Split, rolling_origins, score_split, select
    from ..forecasting.sources import days, parse_days, read_trace

    try:
        origins = [int(x) for x in args.origins.split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"--origins must be day numbers separated by commas, e.g. 4,6,8; got '{args.origins}'"
        ) from None
    splits = rolling_origins(origins, args.test_span)
    report_days = parse_days(args.report_days) if args.report_days else None
    if report_days and any(s.test[1] >= report_days[0] for s in splits):
        raise ValueError(
            f"--report-days {args.report_days} overlap the splits' test days (the last is day "
            f"{max(s.test[1] for s in splits)}): report on days no split scored, or move --origins earlier"
        )
    series = read_trace(args.trace, damping=args.damping)
    if report_days:
        days(series, *report_days)  # a report past the trace's end fails now, not after the selection
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    # Minutes of fitting: progress on stderr even with --json.
    report = select(series, splits, quantile=args.quantile, models=models, seed=args.seed, progress=_stderr)
    report.update({"trace": str(args.trace), "damping": args.damping})
    if report_days:
        held_out = Split((0, report_days[0] - 1), report_days)
        report["report"] = [
            score_split(series, m, held_out, args.quantile, args.seed)
            for m in dict.fromkeys([report["chosen"], args.baseline])
        ]
    if args.json:
        render.print_json(report)
        return 0
    render.forecaster_selection(report)
    return 0


def cmd_forecast_train(args) -> int:
    from ..forecasting.retrain import MIN_GAIN, train_and_register

    outcome = train_and_register(
        args.trace,
        tracking_uri=_tracking_uri(args.tracking_uri),  # a URI MLflow cannot use is refused first
        train_days=args.train_days,
        test_days=args.test_days,
        model=args.model,
        registered_name=args.registered_name,
        damping=args.damping,
        seed=args.seed,
    )
    metrics = outcome.metrics
    out = {
        "model": outcome.model,
        "run_id": outcome.run_id,
        "registered_model": outcome.registered_name,
        "version": outcome.version,
        "model_uri": outcome.model_uri,
        "fit_s": round(outcome.fit_s, 2),
        "metrics": {k: round(v, 5) for k, v in metrics.items()},
        "registered": outcome.registered,
        "quantile": outcome.quantile,
    }
    if outcome.current is not None:
        out["current_metrics"] = {k: round(v, 5) for k, v in outcome.current.items()}
    if args.json:
        render.print_json(out)
    elif outcome.registered:
        print(
            f"registered {outcome.model_uri} (run {outcome.run_id}); q0.95 under-prediction "
            f"{metrics['q095_under_prediction_rate']:.1%}, "
            f"over-provisioning {metrics['q095_mean_over_provisioning']:+.1%}"
        )
    else:
        loss = outcome.loss_metric
        print(
            f"not registered: the new {outcome.model} forecaster's quantile loss at q{outcome.quantile:g}, "
            f"{metrics[loss]:.5f}, is not {MIN_GAIN:.0%} below models:/{outcome.registered_name}/latest's "
            f"{(outcome.current or {})[loss]:.5f} on the same test days; the registered version stays"
        )
    return 0
