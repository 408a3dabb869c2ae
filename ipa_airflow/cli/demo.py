"""`ipa demo`: the example pipelines planned at a range of loads under every policy, or, with
--end-to-end, the whole story through MLflow and Airflow (`make demo`)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from ..settings import REPO
from . import render

# The end-to-end demo runs DAGs, so it lives in the Airflow layer; the engine never imports that layer,
# and the CLI reaches it by name, only for --end-to-end.
END_TO_END = "ipa_airflow_provider.demo_e2e"


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job on embedded defaults")
    p.add_argument("--pipelines", default=str(REPO / "profiles" / "pipelines"))
    p.add_argument(
        "--end-to-end",
        action="store_true",
        help="profile into MLflow, run the DAGs through Airflow, re-profile, compare policies",
    )
    p.add_argument("--home", default=".ipa", help="--end-to-end: where MLflow, Airflow and the report live")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    if args.end_to_end:
        return _end_to_end(Path(args.home), as_json=args.json)
    from ..demo import run_plans_in

    plans = run_plans_in(args.pipelines)
    if args.json:
        render.print_json([p.to_dict() for p in plans])
    else:
        render.demo_plans(plans)
    return 0


def end_to_end_module():
    """The Airflow layer's demo module, or a RuntimeError saying what to install: checked before any
    step runs (the first one profiles for a minute before Airflow would be imported)."""
    missing = [m for m in ("airflow", "mlflow", "torch") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(
            f"`ipa demo --end-to-end` runs the DAGs through Airflow and needs {', '.join(missing)}, "
            "which this environment lacks: install ipa-airflow[all] (`make venv` does), or run "
            "`ipa demo` without --end-to-end for the plans alone"
        )
    try:
        return importlib.import_module(END_TO_END)
    except ModuleNotFoundError as exc:
        if exc.name != END_TO_END.split(".")[0]:
            raise
        raise RuntimeError(
            f"`ipa demo --end-to-end` needs the Airflow layer ({END_TO_END.split('.')[0]}), which is not "
            "installed here: install ipa-airflow from its source tree (pip install -e '.[all]')"
        ) from None


def _end_to_end(home: Path, *, as_json: bool = False) -> int:
    """The demo's steps, with their progress on the console; with `as_json`, progress goes to stderr and
    stdout gets one JSON object: per step, the model version each stage runs, and the policies' table."""
    demo_e2e = end_to_end_module()
    con = render.console(stderr=as_json)
    out = demo_e2e.run(home, con)
    if as_json:
        render.print_json(
            {
                "ok": out["ok"],
                "wall_s": round(out["wall_s"], 1),
                "steps": out["steps"],
                "decisions": [
                    {"trace_second": second, "state": state, "models": models}
                    for second, state, models in out["decisions"]
                ],
                "policies": out["report"]["rows"],
                "task_seconds": out.get("task_seconds", {}),
                "report_dir": str(out["report_dir"]),
            }
        )
    else:
        render.demo_end_to_end(out, home=home.resolve(), con=con)
    return 0 if out["ok"] else 1
