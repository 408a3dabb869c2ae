"""`ipa bench solver`: solve time over the IPA paper's grid, checked against brute force."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import argtypes as at
from ..optimizer import SOLVERS
from ..settings import REPO
from . import render


def add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    p = bench.add_parser("solver", help="solve time over the IPA paper's grid, checked against brute force")
    p.add_argument("--accuracy", choices=["sum", "average", "product"], default="sum")
    p.add_argument("--solver", choices=list(SOLVERS), default="auto")
    p.add_argument("--profiles", default=str(REPO / "profiles" / "h100_torchvision.json"))
    p.add_argument("--max-stages", type=at.bench_stages, default=9)
    p.add_argument("--max-variants", type=at.bench_variants, default=9)
    p.add_argument(
        "--repeats", type=at.repeats, default=1, help="solves per load (more gives steadier medians)"
    )
    p.add_argument("--heterogeneous", action="store_true", help="alternate fp16/fp32 stages (no symmetry)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_solver)
    f = bench.add_parser("fleet", help="fleet plan time for 5, 20 and 50 pipelines under a binding quota")
    f.add_argument(
        "--brute-force-fleets", type=at.repeats, default=12, help="small fleets checked against brute force"
    )
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_bench_fleet)


def cmd_bench_solver(args) -> int:
    from ..bench import solver_grid

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
        render.print_json(report)
    else:
        render.solver_grid(report, accuracy=args.accuracy, solver=args.solver)
    return 0


def cmd_bench_fleet(args) -> int:
    from ..bench import fleet

    report = fleet.run(brute_force_fleets=args.brute_force_fleets)
    if args.json:
        render.print_json(report)
    else:
        render.fleet_bench(report)
    return 0
