"""`ipa models gate` (the SLO gate: can each pipeline that would run a model version meet its SLA at
the peak load? the verdicts go on the version as tags) and `ipa models promote` (move an alias to a
version that passed)."""

from __future__ import annotations

import sys

from .. import argtypes as at
from . import render

version_number = at.Whole(1, 10**12, example="3", what="a model version")


def _common(p) -> None:
    p.add_argument("name", type=at.name, help="the registered model's name in MLflow")
    p.add_argument("version", type=version_number, help="its version, e.g. 3")
    p.add_argument(
        "--tracking-uri",
        type=at.tracking_uri,
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or .ipa/mlflow.db)",
    )
    p.add_argument("--json", action="store_true")


def add_models(sub) -> None:
    models = sub.add_parser("models", help="registered model versions: the SLO gate and aliases")
    models = models.add_subparsers(dest="models", required=True)
    p = models.add_parser(
        "gate", help="can every pipeline that would run this version meet its SLA at the peak load?"
    )
    _common(p)
    p.add_argument(
        "--specs",
        nargs="+",
        metavar="SPEC_OR_FOLDER",
        help="pipeline specs, or folders of them (default: IPA_SPECS_DIR, what the adaptation DAG runs)",
    )
    load = p.add_mutually_exclusive_group()
    load.add_argument("--peak-rps", type=at.load_rps, help="the load to gate at, requests per second")
    load.add_argument(
        "--window",
        type=at.window_s,
        default=3600,
        metavar="S",
        help="else: the highest load of the last S seconds (default 3600), from IPA_LOAD_SOURCE",
    )
    p.add_argument(
        "--prometheus", help="the Prometheus URL when IPA_LOAD_SOURCE is prometheus, e.g. http://prom:9090"
    )
    p.set_defaults(func=cmd_gate)

    p = models.add_parser("promote", help="move an alias to a version that passed the SLO gate")
    _common(p)
    p.add_argument("--alias", type=at.name, required=True, help="e.g. champion")
    p.add_argument("--force", action="store_true", help="move it even if the version failed the gate")
    p.set_defaults(func=cmd_promote)


def cmd_gate(args) -> int:
    import datetime as dt

    from ..registry import registry_for
    from ..registry.gating import gate_model_version, recent_peak_rps, spec_files
    from ..settings import load_settings

    settings = load_settings(tracking_uri=args.tracking_uri)
    specs = args.specs or [str(settings.specs_dir)]
    spec_files(specs)  # a path that does not exist is refused before MLflow is asked anything
    now = dt.datetime.now(dt.UTC)
    peaks: dict[str, float] = {}

    def peak_for(spec) -> float:  # each pipeline's own load when Prometheus is asked per pipeline
        if args.peak_rps is not None:
            return float(args.peak_rps)
        if spec.name not in peaks:
            peaks[spec.name] = recent_peak_rps(
                settings, now=now, window_s=args.window, prometheus_url=args.prometheus, spec=spec
            )
        return peaks[spec.name]

    where = (
        "given"
        if args.peak_rps is not None
        else (f"the highest of the last {args.window} s, from the {settings.load.source}")
    )
    registry = registry_for(args.tracking_uri)
    run = gate_model_version(registry, args.name, str(args.version), specs, peak_rps_for=peak_for, now=now)
    peak = max(peaks.values(), default=float(args.peak_rps or 0.0))
    if args.json:
        render.print_json({**run.to_dict(), "peak_rps": peak, "peak_from": where})
    else:
        print(f"{args.name} v{run.version} at {peak:g} req/s ({where}):")
        for r in run:
            print(f"  {r.describe()}")
            if r.plan_summary:
                print(f"    plan: {r.plan_summary}")
            print(f"    binding: {', '.join(r.binding) or '-'}")
        if run.results:
            print(f"the verdicts are on the version's tags (ipa.gate.<pipeline>) in {registry.tracking_uri}")
    for s in run.skipped:
        print(f"warning: {s.spec} skipped: {s.reason}", file=sys.stderr)
    if not run.results:
        print(
            f"error: no spec in {', '.join(specs)} has a stage whose registered_model is '{args.name}': "
            "nothing was gated",
            file=sys.stderr,
        )
    return 0 if run.passed and not run.skipped else 1


def cmd_promote(args) -> int:
    from ..registry import registry_for
    from ..registry.gating import PromotionRefused, promote

    registry = registry_for(args.tracking_uri)
    out = {"name": args.name, "version": str(args.version), "alias": args.alias}
    try:
        done = promote(registry, args.name, str(args.version), args.alias, force=args.force)
    except PromotionRefused as exc:
        if args.json:
            render.print_json({**out, "moved": False, "message": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        render.print_json({**out, "moved": True, "message": done})
    else:
        print(done)
    return 0
