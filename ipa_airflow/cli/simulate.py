"""`ipa simulate`: a trace replayed through a pipeline under adaptation policies, the paper's load
patterns, or the whole evaluation matrix with its report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import argtypes as at
from ..optimizer import POLICIES
from ..settings import REPO
from ..spec import PLAN_QUANTILES
from . import render


def add_simulate(sub) -> None:
    from ..forecasting.catalog import DEFAULT_FORECASTER, FORECASTERS

    p = sub.add_parser(
        "simulate",
        help="replay a trace through a pipeline under adaptation policies",
        description="ipa simulate SPEC --pattern NAME | ipa simulate patterns | ipa simulate evaluate | "
        "ipa simulate sweep --grid 'quantile=0.9,0.95,0.99;stabilisation=1,4' | "
        "ipa simulate fleet FLEET.yaml --windows 2 --duration 600",
    )
    p.add_argument("target", help="a pipeline spec, or 'patterns', 'evaluate', 'sweep' or 'fleet'")
    p.add_argument(
        "fleet_spec",
        nargs="?",
        metavar="FLEET",
        help="fleet: the fleet spec (docs/fleet.md), replayed with its pipelines planned together and "
        "each alone, cut to fit the quota",
    )
    p.add_argument(
        "--windows",
        type=at.random_windows,
        default=1,
        help="fleet: sets of random windows of the test days, one window per pipeline in each",
    )
    p.add_argument("--trace", help="per-second counts (default: the shipped Twitter trace)")
    p.add_argument("--damping", type=at.damping, default=8.0)
    p.add_argument("--pattern", choices=["bursty", "steady-low", "steady-high", "fluctuating"])
    p.add_argument("--start", type=at.second, help="first second of the window")
    p.add_argument("--duration", type=at.window_s, default=1200, help="seconds of the window")
    sim_policies = ",".join([*POLICIES, "hpa"])
    p.add_argument("--policy", default="ipa", help=f"{sim_policies} (comma-separated)")
    p.add_argument("--policies", default=sim_policies, help="evaluate: the policies")
    p.add_argument("--forecaster", choices=list(FORECASTERS), default=DEFAULT_FORECASTER)
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
        "--stabilisation",
        type=at.stabilisation,
        help="give capacity back only to a plan that carries the last N loads, instead of each spec's "
        "adaptation.stabilisation",
    )
    p.add_argument(
        "--max-utilisation",
        type=at.utilisation,
        help="plan each replica for at most this share of its measured throughput (e.g. 0.8) instead of "
        "each spec's limits.max_utilisation",
    )
    p.add_argument(
        "--random-windows",
        type=at.random_windows,
        default=0,
        help="evaluate: also summarise every policy over N random windows of the test days",
    )
    p.add_argument(
        "--pipelines",
        default=str(REPO / "profiles" / "pipelines"),
        help="evaluate: a folder of specs, or spec files separated by commas",
    )
    p.add_argument(
        "--grid",
        help="sweep: settings of the specs' adaptation and limits sections to replay under ipa, every "
        "combination, e.g. 'quantile=0.9,0.95,0.99;stabilisation=1,4'",
    )
    p.add_argument(
        "--train-days",
        type=at.days,
        default="0-5",
        help="sweep: the forecaster's training days (default 0-5: choose on days evaluate never reports)",
    )
    p.add_argument(
        "--window-days",
        type=at.days,
        default="6-9",
        help="sweep: the days the windows are drawn from (default 6-9; 10-13 are evaluate's test days)",
    )
    p.add_argument("--out", default="reports/simulation", help="evaluate, sweep, fleet: report folder")
    p.add_argument("--seed", type=at.seed, default=0)
    p.add_argument("--plot", type=at.out_file, help="write a PNG of load, accuracy, cost and p99 over time")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)


def _progress(message: str) -> None:
    """Evaluations and sweeps take minutes: progress on stderr even with --json, whose answer is on stdout."""
    print(message, file=sys.stderr)


def _spec_overrides(args) -> dict:
    out = {
        "quantile": args.quantile,
        "interval_s": args.interval,
        "latency_headroom": args.latency_headroom,
        "max_utilisation": args.max_utilisation,
        "stabilisation": args.stabilisation,
    }
    return {k: v for k, v in out.items() if v is not None}


def cmd_simulate(args) -> int:
    from ..forecasting.sources import read_trace
    from ..settings import default_trace
    from ..simulation import cases
    from ..simulation import experiments as ev

    if args.fleet_spec and args.target != "fleet":
        raise ValueError(
            f"a second argument ({args.fleet_spec}) is only for 'fleet': ipa simulate fleet FLEET.yaml"
        )
    trace = read_trace(args.trace or default_trace(), damping=args.damping)
    if args.target == "patterns":
        found = ev.test_patterns(trace)
        if args.json:
            render.print_json({k: v.to_dict() for k, v in found.items()})
        else:
            for p in found.values():
                print(
                    f"{p.name:12s} pieces {list(p.pieces)}  mean {p.mean_rps:.1f}  10-s min {p.min_rps:.1f}  "
                    f"max {p.max_rps:.1f} req/s"
                )
        return 0
    say = (lambda m: print(m, file=sys.stderr)) if not args.json else None
    if args.target == "sweep":
        return _sweep(args, trace)
    if args.target == "fleet":
        return _fleet(args, trace)
    if args.target == "evaluate":
        specs = cases.spec_paths(args.pipelines)
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise ValueError(f"--out {args.out} is a file; the report needs a folder")
        report = ev.evaluate(
            specs,
            trace,
            Path(args.out),
            seed=args.seed,
            model=args.forecaster,
            progress=_progress,
            policies=args.policies.split(","),
            overrides=_spec_overrides(args),
            random_windows=args.random_windows,
        )
        if args.json:
            render.print_json(report)
        else:
            print((Path(args.out) / "evaluation.md").read_text())
            print(f"report, JSON and plots in {args.out}")
        return 0
    window = cases.window(
        trace,
        pattern=args.pattern,
        start=args.start,
        duration=args.duration,
        path=args.trace or default_trace(),
    )
    if say and window.note:
        say(window.note)
    results = cases.replay(
        args.target,
        trace,
        window.pieces,
        args.policy.split(","),
        forecaster=args.forecaster,
        seed=args.seed,
        overrides=_spec_overrides(args),
        say=say,
    )
    where = args.pattern or window.pieces
    if args.plot:
        ev.plot_case(results, f"{Path(args.target).stem}: {where}", Path(args.plot))
    summaries = [r.summary() for r in results.values()]
    if args.json:
        render.print_json(summaries if len(summaries) > 1 else summaries[0])
    else:
        render.simulation(summaries, title=f"{Path(args.target).stem}, {where}")
    return 0


def _fleet(args, trace) -> int:
    """`ipa simulate fleet FLEET.yaml`: joint against independent planning (simulation/fleet_sim.py)."""
    from ..fleet import load_fleet
    from ..optimizer import POLICIES as PLANNED
    from ..simulation import experiments as ev
    from ..simulation import fleet_sim

    if not args.fleet_spec:
        raise ValueError("simulate fleet needs a fleet spec: ipa simulate fleet profiles/fleets/example.yaml")
    if args.windows < 1:
        raise ValueError("--windows must be at least 1 for a fleet")
    if args.policy not in PLANNED:
        raise ValueError(f"--policy {args.policy}: a fleet is planned under one of {', '.join(PLANNED)}")
    # Options the fleet replay does not read, when given: refused, not silently ignored.
    unread = [
        flag
        for flag, value in (
            ("--pattern", args.pattern),
            ("--start", args.start),
            ("--quantile", args.quantile),
            ("--latency-headroom", args.latency_headroom),
            ("--stabilisation", args.stabilisation),
            ("--max-utilisation", args.max_utilisation),
            ("--plot", args.plot),
            ("--grid", args.grid),
            ("--random-windows", args.random_windows or None),
        )
        if value is not None
    ]
    if unread:
        raise ValueError(
            f"{', '.join(unread)}: not read by 'simulate fleet' (it takes --windows, --duration, --interval, "
            "--policy, --forecaster, --seed, --damping, --trace, --out and each spec's own settings)"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out} is a file; the fleet report needs a folder")
    fleet = load_fleet(args.fleet_spec)  # a bad fleet fails before the forecaster is fitted
    fleet_sim.fleet_windows(trace, fleet, args.windows, args.duration, seed=args.seed)  # and too few windows
    _progress(f"fitting the {args.forecaster} forecaster on days 0-9 of the trace")
    fitted = ev.fit_forecaster(trace, model=args.forecaster, seed=args.seed)
    report = fleet_sim.compare(
        fleet,
        trace,
        fitted=fitted,
        windows=args.windows,
        duration=args.duration,
        seed=args.seed,
        policy=args.policy,
        interval_s=args.interval,
        out=out,
        progress=_progress,
    )
    report["damping"] = args.damping
    report["forecaster"] = args.forecaster
    out.mkdir(parents=True, exist_ok=True)
    (out / f"fleet-{fleet.name}.json").write_text(json.dumps(report, indent=1))
    (out / f"fleet-{fleet.name}.md").write_text(fleet_sim.markdown(report))
    if args.json:
        render.print_json(report)
    else:
        print(fleet_sim.markdown(report))
        print(f"report, JSON and a plot per window set in {args.out}")
    return 0


def _sweep(args, trace) -> int:
    from ..forecasting.sources import parse_days
    from ..simulation import cases
    from ..simulation import sweep as sw

    if not args.grid:
        raise ValueError("sweep needs --grid, e.g. --grid 'quantile=0.9,0.95,0.99;stabilisation=1,4'")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file; the sweep needs a folder")
    report = sw.sweep(
        cases.spec_paths(args.pipelines),
        trace,
        sw.parse_grid(args.grid),
        train_days=parse_days(args.train_days),
        window_days=parse_days(args.window_days),
        windows=args.random_windows or 32,  # --random-windows, 32 when not given
        out=Path(args.out),
        model=args.forecaster,
        seed=args.seed,
        progress=_progress,
    )
    (Path(args.out) / "sweep.md").write_text(sw.markdown(report))
    if args.json:
        render.print_json(report)
    else:
        print(sw.markdown(report))
        print(f"report, JSON and the trade-off plot in {args.out}")
    return 0
