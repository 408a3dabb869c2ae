"""Running cases: each in a fresh folder, with its own environment, in a worker thread with a time limit.

The framework, not the kinds, owns the outcomes no kind can report about itself: an exception escaping
the kind's runner is `traceback`, a runner still busy after the case's `timeout_s` is `hang`. A hung
runner's thread cannot be stopped (Python has no way to kill a thread): it is left running in the
background, said so in the row, and the later cases run anyway.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..settings import REPO
from . import capture
from .corpus import Case, write_files

# clear-error: a bad input refused with a message that says what (the case's `match`); ok: a good input
# that worked. The rest are findings: traceback (a crash, or `ipa` exiting 3, its internal error),
# silent (a bad input accepted, or a wrong result), hang, unclear (refused, but the message does not say
# why), refused (a good input refused).
OUTCOMES = ("clear-error", "ok", "traceback", "silent", "hang", "unclear", "refused")
FAILURES = ("traceback", "silent", "hang", "unclear", "refused")


@dataclass(frozen=True)
class Row:
    id: str
    kind: str
    source: str
    about: str
    expect: str
    outcome: str
    message: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    rows: tuple[Row, ...]

    @property
    def counts(self) -> dict[str, int]:
        return {o: sum(r.outcome == o for r in self.rows) for o in OUTCOMES}

    @property
    def findings(self) -> list[Row]:
        return [r for r in self.rows if r.outcome in FAILURES]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {
            "cases": len(self.rows),
            "counts": self.counts,
            "findings": len(self.findings),
            "rows": [r.to_dict() for r in self.rows],
        }


def run_cases(
    cases: Sequence[Case],
    *,
    runners: Mapping[str, Callable] | None = None,
    timeout_s: float | None = None,
    on_row: Callable[[int, int, Row], None] | None = None,
) -> Report:
    """Run every case; `runners` overrides kind runners (tests), `timeout_s` every case's limit."""
    rows = []
    with capture.session():
        for i, case in enumerate(cases):
            row = run_case(case, runners=runners, timeout_s=timeout_s)
            rows.append(row)
            if on_row:
                on_row(i + 1, len(cases), row)
    return Report(tuple(rows))


def run_case(
    case: Case, *, runners: Mapping[str, Callable] | None = None, timeout_s: float | None = None
) -> Row:
    limit = timeout_s if timeout_s is not None else case.timeout_s
    t0 = time.perf_counter()
    try:
        with capture.session(), _workdir(case) as workdir, _isolated(case, workdir):
            outcome, message = _run_with_limit(case, workdir, runners, limit)
    except OSError as exc:  # writing the case's files: the corpus's fault, still not a pass
        outcome, message = "traceback", f"could not set the case up: {describe(exc)}"
    return Row(
        case.id,
        case.kind,
        case.source,
        case.about,
        case.expect,
        outcome,
        message,
        round(time.perf_counter() - t0, 3),
    )


def _run_with_limit(case: Case, workdir: Path, runners, limit: float) -> tuple[str, str]:
    result: dict = {}

    def work() -> None:
        with capture.bind():  # whatever the kind itself prints stays out of the report
            try:
                runner = (runners or {}).get(case.kind)
                if runner is None:
                    from .kinds import runner_for

                    runner = runner_for(case.kind)
                result["value"] = runner(dict(case.raw), workdir)
            except BaseException as exc:  # SystemExit and KeyboardInterrupt from a case are findings too
                result["error"] = exc

    cap = capture.Captured()
    capture.set_active(cap)  # threads the case starts
    try:
        worker = threading.Thread(target=work, name=f"selfcheck-{case.id}", daemon=True)
        worker.start()
        worker.join(limit)
    finally:
        capture.set_active(None)
    if worker.is_alive():
        return "hang", (
            f"no result after {limit:g} s; its thread cannot be stopped and keeps running in the "
            "background while the other cases run"
        )
    if "error" in result:
        return "traceback", describe(result["error"])
    return _checked(result.get("value"))


def _checked(value) -> tuple[str, str]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or value[0] not in OUTCOMES
        or not isinstance(value[1], str)
    ):
        return "traceback", f"the kind's runner returned {value!r}, not (outcome, message)"
    return value


def describe(exc: BaseException) -> str:
    """'TypeError: msg (at ipa_airflow/x.py:12 in f)': the exception and where it was raised, taken as the
    innermost frame of the project outside this framework (else the innermost frame of the kind)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith(_SELF)]
    ours = [f for f in frames if "ipa_airflow" in f.filename and "selfcheck" not in f.filename] or frames
    where = ""
    if ours:
        f = ours[-1]
        try:
            name = str(Path(f.filename).resolve().relative_to(REPO))
        except ValueError:
            name = f.filename
        where = f" (at {name}:{f.lineno} in {f.name})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}{where}"


_SELF = str(Path("selfcheck") / "runner.py")


@contextmanager
def _workdir(case: Case) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"ipa-selfcheck-{case.id[:40]}-"))
    try:
        write_files(case, folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _isolated(case: Case, workdir: Path) -> Iterator[None]:
    """The case's folder as working directory, and an environment that cannot reach the developer's own
    MLflow store, IPA home or cluster; everything restored afterwards."""
    env = {
        "IPA_HOME": str(workdir / ".ipa-home"),
        "MLFLOW_TRACKING_URI": None,
        "IPA_DEBUG": None,  # main's own handling of an internal error is what the cases check
        # A case that forgets --kubeconfig must not reach the developer's cluster.
        "KUBECONFIG": str(workdir / "no-kubeconfig"),
        **case.env,
    }
    saved = {k: os.environ.get(k) for k in env}
    cwd = os.getcwd()
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.chdir(workdir)
        yield
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
