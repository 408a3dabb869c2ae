"""The `ipa` command. Every subcommand that prints numbers also prints them as JSON with --json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .optimizer import POLICIES, SOLVERS, plan
from .pipelines import load_pipeline, missing_profiles
from .plans import Plan
from .profiles import ProfileError, ProfileSet, import_reference_jsonl
from .spec import SpecError, load_spec

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
    pipeline = load_pipeline(args.spec)
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


# ---- demo -------------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from . import demo

    specs = sorted(Path(args.pipelines).glob("*.yaml"))
    if not specs:
        raise ValueError(f"no pipeline specs (*.yaml) in {args.pipelines}")
    plans = demo.run_plans(specs)
    if args.json:
        _print_json([p.to_dict() for p in plans])
    else:
        demo.render(plans, _console())
    return 0


# ---- profiles ---------------------------------------------------------------------------------------
def cmd_profiles_import(args) -> int:
    profiles = import_reference_jsonl(args.file, hardware=args.hardware, source=args.source or str(args.file))
    Path(args.out).write_text(json.dumps(profiles.to_dict(), indent=1))
    print(f"wrote {len(profiles)} profiles to {args.out}")
    return 0


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
    p.add_argument("--load", type=float, required=True, help="predicted load, requests per second")
    p.add_argument("--policy", choices=list(POLICIES), default="ipa")
    p.add_argument("--solver", choices=list(SOLVERS), default="auto")
    p.add_argument("--out", help="also write the plan as JSON to this file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    p = bench.add_parser("solver", help="solve time over the IPA paper's grid, checked against brute force")
    p.add_argument("--accuracy", choices=["sum", "average", "product"], default="sum")
    p.add_argument("--solver", choices=list(SOLVERS), default="auto")
    p.add_argument("--profiles", default=str(REPO_PROFILES / "h100_torchvision.json"))
    p.add_argument("--max-stages", type=int, default=9)
    p.add_argument("--max-variants", type=int, default=9)
    p.add_argument("--repeats", type=int, default=1, help="solves per load (more gives steadier medians)")
    p.add_argument("--heterogeneous", action="store_true", help="alternate fp16/fp32 stages (no symmetry)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_solver)

    p = sub.add_parser("demo", help="the main job on embedded defaults")
    p.add_argument("--pipelines", default=str(REPO_PROFILES / "pipelines"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    profiles = sub.add_parser("profiles", help="profile files").add_subparsers(dest="profiles", required=True)
    p = profiles.add_parser(
        "import-reference", help="convert a torchvision profile dump (JSONL) to a profile file"
    )
    p.add_argument("file")
    p.add_argument("--hardware", required=True, help="hardware name the specs will use, e.g. h100")
    p.add_argument("--source", help="provenance text (default: the file name)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_profiles_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, ProfileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
