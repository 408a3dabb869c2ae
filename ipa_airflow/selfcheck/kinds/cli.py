"""Selfcheck kind `cli`: the `ipa` command, run in-process (`ipa_airflow.cli.main(argv)`) in the case's
folder, with what it prints captured.

Case keys (besides the common ones):
- `argv`: the command's arguments (text; whole numbers are taken as their text). `{repo}` is the
  repository root.
- `match`: for `expect: error`, a regular expression (case-insensitive) that the error must contain,
  in stderr (or stdout, where a command's --json carries the errors); for `expect: ok`, optional text
  the output must contain.

Outcomes: a Python traceback in the output, or exit status 3 (main's internal error), is `traceback`
(an exception escaping main is one too, reported by the framework). Expecting an error: exit 0 is
`silent`; another status with `match` found is `clear-error` (argparse's usage errors included), without
it `unclear`. Expecting success: exit 0 is `ok` (`silent` when the output lacks `match`), else `refused`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .. import capture

INTERNAL_ERROR = 3  # cli.main's exit status for an unexpected exception (a bug)


def check(case: dict) -> list[tuple[str, str]]:
    argv = case.get("argv")
    out = []
    if not isinstance(argv, list) or not argv:
        out.append(("argv", "kind cli needs argv: the arguments of `ipa`, a non-empty list"))
    elif not all(isinstance(a, str) or (isinstance(a, int) and not isinstance(a, bool)) for a in argv):
        out.append(("argv", "every argument must be text; quote numbers such as '1e9' or '.nan'"))
    if case.get("expect") == "error" and not case.get("match"):
        out.append(("match", "a case expecting an error says what the error must name (match: REGEX)"))
    return out


def run(case: dict, workdir: Path) -> tuple[str, str]:
    from ... import cli

    argv = [str(a) for a in case["argv"]]
    with capture.session(), capture.bind() as cap:
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors, --help, --version
            code = exc.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                code = 1
            rc = 0 if code is None else code
    out, err = cap.text()
    return classify(case, rc, out, err)


def classify(case: dict, rc: int, out: str, err: str) -> tuple[str, str]:
    if "Traceback (most recent call last)" in err or "Traceback (most recent call last)" in out:
        return "traceback", f"exit {rc}, printed a traceback: {_last_line(err or out)}"
    if rc == INTERNAL_ERROR:
        return "traceback", f"exit 3 (internal error): {_error_line(err)}"
    match = case.get("match")
    found = any(re.search(match, text, re.IGNORECASE) for text in (err, out)) if match else False
    if case["expect"] == "error":
        if rc == 0:
            return (
                "silent",
                f"exit 0: accepted; printed {_first_line(out) or _first_line(err) or 'nothing'!r}",
            )
        if found:
            return "clear-error", _error_line(err) or _first_line(out)
        return (
            "unclear",
            f"exit {rc}, but nothing printed matches /{match}/: {_error_line(err) or 'no message'}",
        )
    if rc != 0:
        return "refused", f"exit {rc}: {_error_line(err) or _first_line(out) or 'no message'}"
    if match and not found:
        return "silent", f"exit 0, but the output lacks /{match}/: {_first_line(out)!r}"
    return "ok", _first_line(out) or _first_line(err)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _error_line(err: str) -> str:
    """The line that says what went wrong: the first with 'error:' (argparse's 'ipa plan: error: ...' or
    main's 'error: ...'), else the last one printed."""
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    chosen = next((line for line in lines if "error:" in line), lines[-1] if lines else "")
    return chosen[:300]
