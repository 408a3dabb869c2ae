"""`ipa profile` (measure a model on this machine, into MLflow; `--served`: through the real model
server) and `ipa profiles` (profile files: import a reference dump, compare with one, served with
in-process, file the ones kept while MLflow was down)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .. import argtypes as at
from ..settings import REPO
from . import render

# How long MLServer waits to fill a batch when --served; above a second is a typo for milliseconds.
batch_time_s = at.Real(lo=0, hi=10, lo_open=True, example="0.05", what="a batch-filling time in seconds")


# ---- profile ----------------------------------------------------------------------------------------
def add_profile(sub) -> None:
    p = sub.add_parser("profile", help="profile a zoo model or a registered MLflow model version")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--zoo", help="a zoo model name, e.g. resnet18 or distilbert-sst2 (an unknown name lists them all)"
    )
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
    p.add_argument(
        "--served",
        action="store_true",
        help="measure through the real model server (MLServer, MLflow runtime) pinned to --threads cores, "
        "one server per batch size driven by that many concurrent requests; filed beside the in-process "
        "profile (only with --model-uri, on CPU)",
    )
    p.add_argument(
        "--batch-time",
        type=batch_time_s,
        default=None,
        help="with --served: MLSERVER_MODEL_MAX_BATCH_TIME, seconds MLServer waits to fill a batch "
        "(default 0.05)",
    )
    p.add_argument("--no-log", action="store_true", help="do not log the profile to MLflow")
    p.add_argument("--out", type=at.out_file, help="also write the profile as a profile file (JSON)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args) -> int:
    from ..profiling import job
    from ..profiling.served import DEFAULT_BATCH_TIME_S, IN_PROCESS, SERVED
    from ..profiling.sweep import parse_batch_sizes
    from ..registry import registry_for

    if args.batch_time is not None and not args.served:
        raise ValueError("--batch-time is the model server's: it goes with --served")
    batch_sizes = parse_batch_sizes(args.batch_sizes)
    out = Path(args.out) if args.out is not None else None  # checked writable by argparse, before any work
    log = not args.no_log
    registry = registry_for(args.tracking_uri) if log or args.model_uri else None
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))
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
        say=say,
        method=SERVED if args.served else IN_PROCESS,
        batch_time_s=args.batch_time or DEFAULT_BATCH_TIME_S,
    )
    # Served: a line per server started and batch size measured (a bar would hide them).
    disable = args.json or not sys.stderr.isatty() or args.served
    with render.profiling_progress(prepared.label, len(batch_sizes), disable=disable) as on_cell:
        summary = job.profile_and_register(prepared, registry, log=log, out=out, on_cell=on_cell, say=say)
    if args.json:
        render.print_json(summary)
    else:
        render.profile(summary)
        if args.served:
            _served_lines(summary)
    return 0


def _served_lines(summary: dict) -> None:
    """What the server says per batch size, under the table `render.profile` prints."""
    server = summary["server"]
    cores, client = (",".join(map(str, server[k])) for k in ("cores", "client_cores"))
    print(
        f"served by MLServer {server['mlserver']} on core(s) {cores}, batch time "
        f"{server['batch_time_s']:g} s (the client on {client})"
    )
    for c in summary["cells"]:
        mean = "n/a" if c["server_mean_ms"] is None else f"{c['server_mean_ms']:.2f} ms"
        formed = "n/a" if c["mean_batch_served"] is None else f"{c['mean_batch_served']:.2f}"
        print(
            f"  batch {c['batch']}: server {mean} a request, mean batch formed {formed}, "
            f"ready {c['ready_s']:.1f} s after start"
        )
    for w in summary["warnings"]:
        print(f"warning: {w}", file=sys.stderr)


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
    p = profiles.add_parser(
        "import-paper",
        help="convert the IPA authors' profiles and settings of their five pipelines to profiles and specs",
        description="ipa profiles import-paper RUNS SETTINGS: RUNS is ipa_paper_profiles.jsonl.gz, SETTINGS "
        "ipa_paper_pipelines.json (both in the project's shared data; see profiles/README.md)",
    )
    p.add_argument("runs", help="the authors' profiling runs (JSON lines, .gz allowed)")
    p.add_argument("settings", help="the settings of their final experiments (JSON)")
    p.add_argument("--profiles-out", default=str(REPO / "profiles" / "ipa_paper"), help="profile folder")
    p.add_argument("--specs-out", default=str(REPO / "profiles" / "pipelines" / "paper"), help="spec folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profiles_import_paper)
    p = profiles.add_parser("compare", help="ratio of p50 latencies against reference profiles")
    p.add_argument("ours", nargs="+", help="profile files")
    p.add_argument("--reference", required=True)
    p.add_argument(
        "--served",
        action="store_true",
        help="OURS are served profiles (`ipa profile --served --out`), --reference the in-process ones of "
        "the same models: served/in-process ratios of p50, p99 and throughput per batch size",
    )
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


def cmd_profiles_import_paper(args) -> int:
    from ..profiling.paper_reference import write_all

    done = write_all(args.runs, args.settings, Path(args.profiles_out), Path(args.specs_out))
    rows: list[dict[str, Any]] = [
        {
            "pipeline": c.name,
            "spec": str(Path(args.specs_out) / f"{c.name.removeprefix('paper-')}.yaml"),
            "profiles": len(c.profiles),
            "runs_without_latency": list(c.skipped),
        }
        for c in done
    ]
    if args.json:
        render.print_json(rows)
    else:
        for r in rows:
            left = len(r["runs_without_latency"])
            print(
                f"{r['spec']}: {r['profiles']} profiles"
                + (f" ({left} runs without a latency or throughput left out)" if left else "")
            )
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

    if args.served:
        return _compare_served(args)
    report = compare(ProfileSet.load(args.ours), ProfileSet.load([args.reference]))
    if args.json:
        render.print_json(report)
    else:
        render.profiles_compare(report, reference=args.reference)
    return 0


def _compare_served(args) -> int:
    from rich.table import Table

    from ..profiles import ProfileSet
    from ..profiling.served import compare_served

    report = compare_served(ProfileSet.load(args.ours), ProfileSet.load([args.reference]))
    if args.json:
        render.print_json(report)
        return 0
    table = Table(title=f"served / in-process ({args.reference})")
    for col in ("model", "resources", "batch", "p50 ms", "ratio", "p99 ms", "ratio", "req/s", "ratio"):
        table.add_column(col, justify="left" if col in ("model", "resources") else "right")
    for r in report["rows"]:
        table.add_row(
            r["model"],
            r["resources"],
            str(r["batch"]),
            f"{r['served_p50_ms']:.2f} / {r['in_process_p50_ms']:.2f}",
            f"{r['p50_ratio']:.2f}",
            f"{r['served_p99_ms']:.2f} / {r['in_process_p99_ms']:.2f}",
            f"{r['p99_ratio']:.2f}",
            f"{r['served_rps']:.1f} / {r['in_process_rps']:.1f}",
            f"{r['throughput_ratio']:.2f}",
        )
    out = render.console()
    out.print(table)
    out.print(
        f"{report['matched_cells']} cells; median ratios p50 {report['median_p50_ratio']}, "
        f"p99 {report['median_p99_ratio']}, throughput {report['median_throughput_ratio']}"
    )
    return 0
