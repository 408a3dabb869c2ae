"""`ipa live prepare` registers and profiles the live pipeline's models; `ipa live run` replays a window
of the trace as real requests through MLServer replicas on this machine under each policy, then the
simulator on the same window, and prints both side by side."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .. import argtypes as at
from . import render

DEFAULT_SPEC = "profiles/live/two-stage-cpu.yaml"


def add_live(sub) -> None:
    live = sub.add_parser("live", help="the closed loop on real MLServer replicas on this machine")
    live = live.add_subparsers(dest="live", required=True)
    p = live.add_parser("prepare", help="register the live pipeline's models in MLflow and profile them here")
    p.add_argument(
        "--tracking-uri", type=at.tracking_uri, help="the MLflow to register in (MLFLOW_TRACKING_URI)"
    )
    p.add_argument(
        "--methods",
        default="in-process,served",
        help="how to profile: in-process (a bare model call), served (through MLServer), or both",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prepare)

    p = live.add_parser(
        "profiles", help="served over in-process latency and throughput of the live models, from MLflow"
    )
    p.add_argument("--tracking-uri", type=at.tracking_uri, help="the MLflow the models are in")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profiles)

    p = live.add_parser("report", help="print an `ipa live run --out` report as the side-by-side table")
    p.add_argument("file")
    p.set_defaults(func=cmd_report)

    p = live.add_parser(
        "run",
        help="replay a window as real requests under each policy, then simulate it; print both",
        description="Needs MLServer (make serving-env), Prometheus (make services) and the models "
        "`ipa live prepare` registers. Each policy takes the window's duration plus about a minute.",
    )
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC, help=f"the pipeline (default {DEFAULT_SPEC})")
    p.add_argument("--start", type=at.second, required=True, help="the trace second the window starts at")
    p.add_argument("--duration", type=at.window_s, default=600, help="seconds to replay (default 600)")
    p.add_argument("--damping", type=at.damping, default=8.0, help="the trace's rates divided by this")
    p.add_argument("--policies", default="ipa,fa2-low", help="comma-separated (planned policies only)")
    # The forecaster docs/live.md's measurements were taken with (before the default became
    # lstm-quantile-hourly-onsets); give --forecaster to run another.
    p.add_argument("--forecaster", default="lstm-quantile")
    p.add_argument(
        "--profiles",
        choices=("served", "in-process"),
        default="served",
        help="which profiles plan and simulate: served (through MLServer, what the replicas are; default) "
        "or in-process (a bare model call)",
    )
    p.add_argument("--trace", help="a per-second trace (default: the shipped one)")
    p.add_argument("--tracking-uri", type=at.tracking_uri, help="the MLflow the models are in")
    p.add_argument(
        "--calibration",
        help="an earlier run's report (--out): simulate with the per-stage overhead it measured (on another "
        "window, so the calibration is checked on traffic it did not come from)",
    )
    p.add_argument("--seed", type=at.seed, default=0)
    p.add_argument("--out", type=at.out_file, help="also write the report as JSON here (after each policy)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)


def _say(args):
    return (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else print


def _tracking_uri(args) -> str:
    from ..settings import load_settings

    return load_settings(tracking_uri=args.tracking_uri).mlflow.tracking_uri


def cmd_prepare(args) -> int:
    from ..live.models import prepare
    from ..profiling.served import METHODS, Method

    names = [m for m in args.methods.split(",") if m]
    if not names or set(names) - {"in-process", "served"}:
        raise ValueError(f"--methods {args.methods}: use in-process, served, or both (comma-separated)")
    methods: tuple[Method, ...] = tuple(m for m in METHODS if m in names)
    done = prepare(_tracking_uri(args), methods=methods, say=_say(args))
    if args.json:
        render.print_json([d.__dict__ for d in done])
    return 0


def cmd_report(args) -> int:
    import json

    from ..live.compare import markdown

    try:
        report = json.loads(Path(args.file).read_text())
        print(markdown(report))
    except OSError as exc:
        raise ValueError(f"{args.file}: cannot read it: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{args.file}: not an `ipa live run --out` report") from None
    return 0


def cmd_profiles(args) -> int:
    from ..live.models import profile_ratios

    rows = profile_ratios(_tracking_uri(args))
    if not rows:
        raise ValueError("no live model version has both profiles in MLflow: run `ipa live prepare` first")
    if args.json:
        render.print_json(rows)
        return 0
    columns = ("model", "architecture", "batch", "p50 served / in-process ms", "p50 ratio", "p99 ratio")
    print("| " + " | ".join((*columns, "throughput ratio")) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model_uri']} | {r['architecture']} | {r['batch']} | {r['served_p50_ms']:.1f} / "
            f"{r['in_process_p50_ms']:.1f} | {r['p50_ratio']:.2f} | {r['p99_ratio']:.2f} "
            f"| {r['throughput_ratio']:.2f} |"
        )
    return 0


def cmd_run(args) -> int:
    import json
    import signal

    from ..forecasting.sources import read_trace
    from ..live.compare import calibration, markdown, side_by_side
    from ..live.run import quiet_harness, run_policy, window_of
    from ..pipelines import load_pipeline
    from ..registry import registry_for
    from ..serving.environment import mlserver_executable
    from ..settings import default_trace
    from ..simulation import experiments as ev
    from ..simulation.cases import check_window
    from ..simulation.controllers import make_policy
    from ..simulation.simulator import Simulator

    # A stop from outside (kill, a CI timeout) ends like Ctrl-C: through the finally that stops the
    # model servers and Prometheus, which run in sessions of their own and would outlive us.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    say = _say(args)
    mlserver_executable()  # no MLServer: say how to make it before anything starts
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise ValueError("ipa live reads the load from a real Prometheus: install it (make services)")
    from ..optimizer.policies import POLICIES

    policies = [p for p in args.policies.split(",") if p]
    if "hpa" in policies:
        raise ValueError("--policies: hpa runs in the simulator only; live runs the planned policies")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise ValueError(f"--policies {args.policies}: choose among {', '.join(POLICIES)}")
    tracking_uri = _tracking_uri(args)
    trace_path = args.trace or default_trace()
    trace = read_trace(trace_path, damping=args.damping)
    check_window(trace, args.start, args.duration, trace_path)
    pipeline = load_pipeline(args.spec, registry=registry_for(tracking_uri, method=args.profiles))
    window = window_of(trace, args.start, args.duration)
    say(f"fitting the {args.forecaster} forecaster on days 0-9 of the trace")
    fitted = ev.fit_forecaster(trace, model=args.forecaster, seed=args.seed)
    quiet_harness()  # after the fit, which may use every core
    overhead_s = _calibration(args.calibration, pipeline.spec) if args.calibration else None
    out: list[dict] = []
    report = {
        "spec": str(args.spec),
        "window": {"start": args.start, "duration": args.duration, "damping": args.damping},
        "forecaster": args.forecaster,
        "profiles": args.profiles,
        "calibrated_with": (
            {
                "file": args.calibration,
                "overhead_ms": {k: [x * 1000 for x in v] for k, v in overhead_s.items()},
            }
            if overhead_s
            else None
        ),
        "policies": out,
    }
    for policy in policies:
        live = run_policy(
            pipeline,
            window,
            policy,
            fitted=fitted,
            tracking_uri=tracking_uri,
            prometheus_binary=prometheus,
            seed=args.seed,
            say=say,
        )

        def simulate(overhead_s=None, policy=policy):
            pol = make_policy(policy, pipeline.spec, pipeline.profiles, fitted, start_s=args.start)
            return Simulator(
                pipeline.spec,
                pipeline.profiles,
                window.counts,
                pol,
                history=window.history,
                seed=args.seed,
                source=pipeline.source,
                overhead_s=overhead_s,
            ).run()

        if overhead_s:
            row = side_by_side(simulate(overhead_s), live.result, uncalibrated=simulate())
        else:
            row = side_by_side(simulate(), live.result)
        row["measured_only"] = {k: v for k, v in live.summary().items() if k not in live.result.summary()}
        say(f"{policy}: measured {live.summary()}\n{policy}: simulated {row['rows']}")
        out.append(row)
        report["calibration"] = {"overhead_ms": calibration(out), "window": report["window"]}
        if args.out:  # after each policy: a later failure keeps the measured ones
            Path(args.out).write_text(json.dumps(report, indent=1))
    if args.json:
        render.print_json(report)
    else:
        print(markdown(report))
    return 0


def _calibration(path: str, spec) -> dict[str, list[float]]:
    """The per-stage overhead distribution (seconds at each HOP_LEVELS percentile) an earlier `ipa live
    run --out` report measured for this spec."""
    import json

    from ..simulation.simulator import HOP_LEVELS

    try:
        report = json.loads(Path(path).read_text())
        measured = report["calibration"]["overhead_ms"]
    except OSError as exc:
        raise ValueError(f"--calibration {path}: cannot read it: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"--calibration {path}: not an `ipa live run --out` report with a calibration.overhead_ms section"
        ) from None
    n = len(HOP_LEVELS)
    if not isinstance(measured, dict) or not all(
        isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float)) for x in v)
        for v in measured.values()
    ):
        raise ValueError(
            f"--calibration {path}: calibration.overhead_ms must map stage names to {n} milliseconds each "
            f"(at the percentiles {', '.join(f'{q:g}' for q in HOP_LEVELS)})"
        )
    unknown = sorted(set(measured) - set(spec.stage_names))
    if unknown:
        raise ValueError(
            f"--calibration {path}: stages {', '.join(unknown)} are not stages of {spec.name} "
            f"({', '.join(spec.stage_names)}): it was measured on another pipeline"
        )
    return {k: [float(x) / 1000 for x in v] for k, v in measured.items()}
