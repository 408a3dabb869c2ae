"""`ipa selfcheck`: the bad-input corpus, every case of which must end in a clear error (or succeed)."""

from __future__ import annotations

import sys

from .. import argtypes as at
from . import render


def add_selfcheck(sub) -> None:
    p = sub.add_parser(
        "selfcheck",
        help="run the bad-input corpus: every case must end in a clear error (or succeed, if good)",
    )
    p.add_argument("--case", help="run only the case with this id, or those whose id this regex finds")
    p.add_argument(
        "--timeout", type=at.timeout_s, help="seconds each case may take (default: each case's timeout_s)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_selfcheck)


def cmd_selfcheck(args) -> int:
    """Run the bad-input corpus; exit 1 when any case is a traceback, silent, hang, unclear or refused."""
    import time

    from .. import selfcheck
    from ..selfcheck.report import render as render_report

    cases = selfcheck.select(selfcheck.load_cases(), args.case)
    last = [time.perf_counter()]

    def progress(i: int, n: int, row) -> None:  # on stderr, every 5 s and for each slow case
        now = time.perf_counter()
        if row.outcome == "hang" or row.seconds >= 5 or now - last[0] >= 5:
            last[0] = now
            print(
                f"  selfcheck: {i}/{n} done; {row.id}: {row.outcome} in {row.seconds:.1f} s", file=sys.stderr
            )

    report = selfcheck.run_cases(cases, timeout_s=args.timeout, on_row=progress)
    if args.json:
        render.print_json(report.to_dict())
    else:
        render_report(report, render.console())
    return 0 if report.ok else 1
