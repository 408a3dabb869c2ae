"""The `ipa` command. Every subcommand that prints numbers also prints them as JSON with --json.

One module per command group (planning: validate/plan/manifests/reconcile; bench; profiling:
profile/profiles; models: gate/promote; forecast; simulate; demo; selfcheck) declares its arguments and
calls the engine; render.py prints every table and JSON. This module assembles the parser and turns errors
into exit statuses: 2 for the user's input or environment, 3 for a bug, 130 for an interrupt.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..settings import debug_enabled
from . import bench, demo, forecast, live, models, planning, profiling, selfcheck, simulate, ui, webhook


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipa", description="Inference Pipeline Adaptation for Airflow")
    parser.add_argument("--version", action="version", version=f"ipa-airflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    # In the order `ipa --help` lists them.
    planning.add_validate(sub)
    planning.add_plan(sub)
    bench.add_bench(sub)
    profiling.add_profile(sub)
    forecast.add_forecast(sub)
    planning.add_manifests(sub)
    planning.add_reconcile(sub)
    simulate.add_simulate(sub)
    demo.add_demo(sub)
    profiling.add_profiles(sub)
    models.add_models(sub)
    selfcheck.add_selfcheck(sub)
    ui.add_ui(sub)
    webhook.add_webhook(sub)
    live.add_live(sub)
    return parser


# Errors about the user's input or environment: `error: ...`, exit 2. OSError is one (a file that cannot
# be read or written, a server that does not answer): its message names the file or the address.
# ProfileError (a LookupError) is one too; it is checked in `is_user_error`, which imports it only when an
# error happens, so that `ipa --help` does not load the profile code (and scipy).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError, KeyError, OSError)
# Subclasses of those that are bugs, not input: shown as internal errors.
BUGS = (RecursionError, NotImplementedError)
INTERNAL_ERROR = 3  # `ipa selfcheck` counts this exit status as a traceback


def is_user_error(exc: BaseException) -> bool:
    from ..profiles import ProfileError  # SpecError is a ValueError

    return isinstance(exc, (*USER_ERRORS, ProfileError)) and not isinstance(exc, BUGS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if is_user_error(exc):
            print(f"error: {_user_error_text(exc)}", file=sys.stderr)
            return 2
        # A bug: no traceback for the user, but never hidden either (exit 3, the type, and how to see it).
        if debug_enabled():
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(
            "  this is a bug in ipa, not in your input: run again with IPA_DEBUG=1 for the traceback, "
            "and report it",
            file=sys.stderr,
        )
        return INTERNAL_ERROR


def _user_error_text(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]  # str(KeyError) quotes its message
    return str(exc)
