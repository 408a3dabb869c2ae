"""`ipa validate`, `ipa plan`, `ipa manifests` and `ipa reconcile`: a spec, its plan, the Deployments
the plan renders to, and the plan applied to a cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import argtypes as at
from ..cluster.factory import BACKEND_KINDS, backend_for
from ..optimizer import POLICIES, SOLVERS, plan
from ..pipelines import check_pipeline, load_pipeline
from ..spec import SpecError
from . import render


def _add_tracking_uri(p, what: str) -> None:
    p.add_argument("--tracking-uri", type=at.tracking_uri, help=f"read {what} from this MLflow")


def _registry(args, spec_path: str | None = None):
    """The MLflow registry `--tracking-uri` names; for a spec with a registry stage, the settings' one
    (MLFLOW_TRACKING_URI, else the local store) when none is named; else None."""
    from ..registry import registry_for

    if getattr(args, "tracking_uri", None):
        return registry_for(args.tracking_uri)
    if spec_path is not None:
        from ..spec import load_spec

        if load_spec(spec_path).from_registry:
            return registry_for(None)
    return None


# ---- validate ---------------------------------------------------------------------------------------
def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check pipeline specs (schema and profiles)")
    p.add_argument("specs", nargs="+")
    _add_tracking_uri(
        p, "the versions and profiles of registry stages (else only their structure is checked)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:
    from ..fleet import FleetError, is_fleet_file

    failed = 0
    results = []
    registry = _registry(args)  # a registry stage is checked against MLflow only when it is named
    for path in args.specs:
        try:
            notes = (
                _check_fleet(path, registry)
                if is_fleet_file(path)
                else check_pipeline(path, registry=registry)
            )
            results.append({"spec": str(path), "ok": True, "errors": [], "notes": notes})
            if not args.json:
                print(f"{path}: ok")
                for note in notes:
                    print(f"  {note}")
        except (SpecError, FleetError) as exc:
            failed += 1
            errors = [{"path": p, "message": m} for p, m in exc.problems]
            results.append({"spec": str(path), "ok": False, "errors": errors})
            if not args.json:
                print(exc, file=sys.stderr)
    if args.json:
        render.print_json(results if len(results) > 1 else results[0])
    return 1 if failed else 0


def _check_fleet(path: str, registry) -> list[str]:
    """A fleet spec validated whole (its fields, the quota's cover, and every pipeline it lists as
    `ipa validate` checks one, its template too): the notes."""
    from ..fleet import load_fleet

    fleet = load_fleet(path, registry=registry)
    quota = ", ".join(f"{k} {v:g}" for k, v in fleet.quota.items())
    notes = [f"fleet '{fleet.name}': {', '.join(fleet.pipeline_names)} under quota {quota}"]
    for m in fleet.members:
        notes += [f"{m.name}: {note}" for note in check_pipeline(m.pipeline.source, registry=registry)]
    return notes


# ---- plan -------------------------------------------------------------------------------------------
def add_plan(sub) -> None:
    p = sub.add_parser("plan", help="solve the program for one load")
    p.add_argument("spec", help="a pipeline spec, or a fleet spec (docs/fleet.md)")
    p.add_argument("--load", type=at.load_rps, help="predicted load, requests per second (a pipeline spec)")
    p.add_argument(
        "--loads",
        type=at.loads,
        metavar="NAME=RPS,...",
        help="a fleet spec: each pipeline's predicted load, e.g. video-cpu=10,paper-nlp=4",
    )
    p.add_argument("--policy", choices=list(POLICIES), default="ipa")
    p.add_argument("--solver", choices=list(SOLVERS), default="auto", help="a pipeline spec's solver")
    p.add_argument("--out", type=at.out_file, help="also write the plan as JSON to this file")
    p.add_argument(
        "--tracking-uri", type=at.tracking_uri, help="read profiles the spec's files lack from this MLflow"
    )
    p.add_argument("--runtime", help="refuse MLflow profiles measured on another runtime, e.g. torch==2.14.1")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan, plan_parser=p)


def cmd_plan(args) -> int:
    from ..fleet import is_fleet_file

    # --loads alone means a fleet: a file that is no fleet spec (missing, not YAML, a stray key) is then
    # reported by the fleet loader, not as a pipeline spec missing --load.
    if is_fleet_file(args.spec) or (args.loads is not None and args.load is None):
        return _cmd_plan_fleet(args)
    if args.load is None:  # as argparse said when --load was required of every spec
        args.plan_parser.error("the following arguments are required: --load")
    if args.loads is not None:
        args.plan_parser.error(f"--loads is for fleet specs; {args.spec} is a pipeline spec: give --load")
    pipeline = load_pipeline(args.spec, registry=_registry(args, args.spec), runtime=args.runtime)
    result = plan(pipeline.spec, pipeline.profiles, args.load, policy=args.policy, solver=args.solver)
    if args.out:
        Path(args.out).write_text(result.to_json())
    if args.json:
        render.print_json(result.to_dict())
    else:
        render.plan(result)
    return 0


def _cmd_plan_fleet(args) -> int:
    from ..fleet import load_fleet, plan_fleet

    if args.loads is None:
        args.plan_parser.error(
            f"{args.spec} is a fleet spec: give each pipeline's load with --loads NAME=RPS,..."
        )
    if args.load is not None:
        args.plan_parser.error(f"--load is for pipeline specs; {args.spec} is a fleet spec: give --loads")
    if _is_pipeline_file(args.spec):
        args.plan_parser.error(f"--loads is for fleet specs; {args.spec} is a pipeline spec: give --load")
    if args.solver != "auto":  # the fleet has one exact program (docs/fleet.md): a choice would be ignored
        args.plan_parser.error(f"--solver {args.solver} is for pipeline specs; a fleet is solved exactly")
    fleet = load_fleet(args.spec, registry=_fleet_registry(args), runtime=args.runtime)
    result = plan_fleet(fleet, args.loads, policy=args.policy)
    if args.out:
        Path(args.out).write_text(json.dumps(result.to_dict(), indent=2))
    if args.json:
        render.print_json(result.to_dict())
    else:
        render.fleet_plan(result)
    return 0


def _is_pipeline_file(path: str) -> bool:
    """Whether `path` reads as a pipeline spec (it lists stages, no pipelines)."""
    from collections.abc import Mapping

    from ..userfiles import UserFileError, read_yaml

    try:
        data = read_yaml(path)
    except (UserFileError, OSError):
        return False
    return isinstance(data, Mapping) and "stages" in data and "pipelines" not in data


def _fleet_registry(args):
    """As `_registry` for a pipeline spec: `--tracking-uri`, else the settings' MLflow when a pipeline of
    the fleet has a registry stage (the fleet loader reports whatever of the fleet does not read)."""
    from ..fleet import FleetError, FleetSpec
    from ..registry import registry_for
    from ..spec import load_spec
    from ..userfiles import UserFileError, read_yaml

    if getattr(args, "tracking_uri", None):
        return registry_for(args.tracking_uri)
    try:
        fleet = FleetSpec.from_dict(read_yaml(args.spec), source=str(args.spec))
    except (UserFileError, OSError, FleetError):
        return None
    for entry in fleet.pipelines:
        try:
            if load_spec(Path(args.spec).parent / entry.spec).from_registry:
                return registry_for(None)
        except (SpecError, OSError):
            continue
    return None


# ---- manifests --------------------------------------------------------------------------------------
def add_manifests(sub) -> None:
    p = sub.add_parser("manifests", help="render the Deployments of a plan as YAML, without a cluster")
    p.add_argument("spec")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--plan", help="a plan written by `ipa plan --out`")
    which.add_argument("--load", type=at.load_rps, help="plan for this load (req/s) first")
    p.add_argument("--policy", default="ipa", choices=list(POLICIES))
    p.add_argument("--out", type=at.out_file, help="write to this file instead of stdout")
    _add_tracking_uri(p, "registry stages' versions and the profiles the spec's files lack")
    p.set_defaults(func=cmd_manifests)


def cmd_manifests(args) -> int:
    """The Deployments a plan renders to, as YAML for kubectl or a GitOps repository."""
    from ..cluster.desired import desired_state
    from ..plans import load_plan

    pipeline = load_pipeline(args.spec, registry=_registry(args, args.spec))
    if args.plan:
        the_plan = load_plan(args.plan)
    else:
        the_plan = plan(pipeline.spec, pipeline.profiles, args.load, policy=args.policy)
    docs = desired_state(the_plan, pipeline.spec, base=Path(args.spec).parent)
    source = f"plan {args.plan}" if args.plan else f"{args.policy} at {args.load:g} req/s"
    text, warning = render.manifests(docs, spec=args.spec, source=source, the_plan=the_plan)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{len(docs)} Deployments written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# ---- reconcile --------------------------------------------------------------------------------------
def add_reconcile(sub) -> None:
    p = sub.add_parser("reconcile", help="apply a plan to the cluster (or preview it with --dry-run)")
    p.add_argument("spec")
    p.add_argument("--plan", required=True, help="a plan written by `ipa plan --out`")
    p.add_argument("--dry-run", action="store_true", help="diff and server-side validate, write nothing")
    p.add_argument("--backend", choices=BACKEND_KINDS, default="simulated")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config or in-cluster)")
    p.add_argument("--state-file", help="simulated backend: where its cluster state lives")
    p.add_argument(
        "--lock-wait",
        type=at.wait_s,
        default=30.0,
        metavar="S",
        help="wait up to S seconds for another reconcile of the same pipeline to finish (default 30)",
    )
    _add_tracking_uri(p, "registry stages' versions (the variants the plan may name)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reconcile)


# The CLI's simulated cluster brings a changed Deployment up 10 s later (simulated_cluster's
# long-standing default); the operators pass their own (0 s, or the DAG's settings).
CLI_SIMULATED_STARTUP_S = 10.0


def cmd_reconcile(args) -> int:
    from ..cluster.reconcile import reconcile
    from ..plans import load_plan

    pipeline = load_pipeline(args.spec, registry=_registry(args, args.spec))
    the_plan = load_plan(args.plan, pipeline.spec)
    backend = backend_for(
        args.backend,
        kubeconfig=args.kubeconfig,
        state_file=args.state_file,
        startup_s=CLI_SIMULATED_STARTUP_S,
    )
    result = reconcile(
        the_plan,
        pipeline.spec,
        backend,
        dry_run=args.dry_run,
        base=Path(args.spec).parent,
        lock_wait_s=args.lock_wait,
    )
    if args.json:
        render.print_json(result.to_dict())
    else:
        render.reconcile(result)
    if not result.ok:
        print(f"error: {result.summary()}", file=sys.stderr)
    return 0 if result.ok else 1
