"""`ipa profile` (measure a model on this machine, into MLflow) and `ipa profiles` (profile files:
import a reference dump, compare with one, file the ones kept while MLflow was down)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import argtypes as at
from . import render


# ---- profile ----------------------------------------------------------------------------------------
def add_profile(sub) -> None:
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


def cmd_profile(args) -> int:
    from ..profiling import job
    from ..profiling.sweep import parse_batch_sizes
    from ..registry import registry_for

    batch_sizes = parse_batch_sizes(args.batch_sizes)
    out = Path(args.out) if args.out is not None else None  # checked writable by argparse, before any work
    log = not args.no_log
    registry = registry_for(args.tracking_uri) if log or args.model_uri else None
    prepared = job.prepare(
        zoo=args.zoo,
        model_uri=args.model_uri,
        name=args.name,
        batch_sizes=batch_sizes,
        device=args.device,
        threads=args.threads,
        dtype=args.dtype,
        hardware=args.hardware,
        registry=registry,
        log=log,
        say=(lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr)),
    )
    disable = args.json or not sys.stderr.isatty()
    with render.profiling_progress(prepared.label, len(batch_sizes), disable=disable) as on_cell:
        summary = job.profile_and_register(prepared, registry, log=log, out=out, on_cell=on_cell)
    if args.json:
        render.print_json(summary)
    else:
        render.profile(summary)
    return 0


# ---- profiles ---------------------------------------------------------------------------------------
def add_profiles(sub) -> None:
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


def cmd_profiles_import(args) -> int:
    from ..profiles import ProfileError, import_reference_jsonl

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
    from ..profiling.filing import pending, pending_dir, push
    from ..registry import registry_for

    files = args.files or pending()
    if not files:
        if args.json:
            render.print_json({"filed": [], "failed": [], "left": [], "unreachable": ""})
        else:
            print(f"nothing to file: no pending profiles in {pending_dir()}")
        return 0
    registry = registry_for(args.tracking_uri)
    report = push(registry, files)
    if args.json:
        render.print_json({**report.to_dict(), "tracking_uri": registry.tracking_uri})
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
    from ..profiles import ProfileSet
    from ..reports.compare import compare

    report = compare(ProfileSet.load(args.ours), ProfileSet.load([args.reference]))
    if args.json:
        render.print_json(report)
    else:
        render.profiles_compare(report, reference=args.reference)
    return 0
