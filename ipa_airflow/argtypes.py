"""The types of the `ipa` command's arguments, defined once: every number the command line takes goes
through one of these, so NaN, infinities, negatives and absurd sizes are refused by argparse, with the
flag named, before any work starts.

Each is a callable for `add_argument(type=...)` that raises `argparse.ArgumentTypeError` with a message
saying what is expected (argparse prefixes it with the flag).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Real:
    """A finite float in a range: `lo`/`hi` bounds (None: unbounded), each included or not."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    example: str = "1.5"
    what: str = "a number"  # names the value in the message on a number out of range
    kind: str = "a number"  # what is expected, in the message on a word that is no number

    def __call__(self, text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {self.kind} such as {self.example}, got {text!r}"
            ) from None
        if not math.isfinite(x) or not self._inside(x):
            raise argparse.ArgumentTypeError(
                f"{self.what} is {self.range_text()}, such as {self.example}, not {text}"
            )
        return x

    def _inside(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def range_text(self) -> str:
        lo = None if self.lo is None else (f"above {self.lo:g}" if self.lo_open else f"at least {self.lo:g}")
        hi = None if self.hi is None else (f"below {self.hi:g}" if self.hi_open else f"at most {self.hi:g}")
        if self.lo is not None and self.hi is not None and self.lo_open and self.hi_open:
            return f"strictly between {self.lo:g} and {self.hi:g}"
        return " and ".join(p for p in (lo, hi) if p) or "finite"

    @property
    def __name__(self) -> str:  # argparse names a type by it in some messages
        return self.what


@dataclass(frozen=True)
class Whole:
    """An integer from `lo` to `hi`, both included; `hi` keeps a typo from allocating gigabytes."""

    lo: int
    hi: int
    example: str = "8"
    what: str = "a whole number"
    why_hi: str = ""  # said when the value is above `hi`

    def __call__(self, text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number such as {self.example}, got {text!r}"
            ) from None
        if n < self.lo or n > self.hi:
            why = f" ({self.why_hi})" if n > self.hi and self.why_hi else ""
            raise argparse.ArgumentTypeError(f"{self.what} is from {self.lo} to {self.hi}{why}, not {n}")
        return n

    @property
    def __name__(self) -> str:
        return self.what


# ---- the numbers the command takes -----------------------------------------------------------------------
load_rps = Real(lo=0, example="120", what="a load in requests per second")
positive = Real(lo=0, lo_open=True, example="8", what="a positive number")
damping = Real(lo=0, lo_open=True, example="8", what="a damping factor")
wait_s = Real(lo=0, hi=3600, example="30", what="a wait in seconds")
timeout_s = Real(lo=0, hi=600, lo_open=True, example="60", what="a time limit in seconds")
interval_s = Real(lo=0, hi=86_400, lo_open=True, example="10", what="an interval in seconds")
# A quantile to plan or score at: 0 and 1 themselves are no forecast quantile.
quantile = Real(lo=0, hi=1, lo_open=True, hi_open=True, example="0.95", what="a quantile")
# A share of a replica's measured throughput a plan may use: 0 would need endless replicas.
utilisation = Real(lo=0, hi=1, lo_open=True, example="0.8", what="a utilisation cap", kind="a share")
# A share of the SLA kept free: 1 would leave no time to serve.
headroom = Real(lo=0, hi=1, hi_open=True, example="0.2", what="a latency headroom", kind="a share of the SLA")

stabilisation = Whole(1, 1000, example="4", what="a number of forecasts", why_hi="the spec allows 1000")
seed = Whole(0, 2**32 - 1, example="0", what="a seed")  # numpy's seeds are 32-bit
threads = Whole(1, 1024, example="4", what="a number of threads")
repeats = Whole(1, 1000, example="3", what="a number of repeats")
bench_stages = Whole(1, 20, example="9", what="a number of stages", why_hi="the IPA paper's grid goes to 9")
bench_variants = Whole(1, 9, example="9", what="a number of variants", why_hi="the bench has 9 models")
random_windows = Whole(0, 1000, example="32", what="a number of random windows")
# A year of seconds is 31.6 million samples (250 MB as floats); longer is a typo, not a trace.
export_days = Whole(1, 366, example="14", what="a number of days", why_hi="at most a year of seconds")
window_s = Whole(1, 366 * 86_400, example="1200", what="a duration in seconds", why_hi="at most a year")
unix_s = Whole(0, 10**10, example="1700000000", what="a unix time in seconds")
second = Whole(0, 10**10, example="864000", what="a second of the trace")


def loads(text: str) -> dict[str, float]:
    """Per-pipeline loads of a fleet, 'name=rps,name=rps' (e.g. 'video-cpu=10,paper-nlp=4')."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip()
        if not sep or not name:
            raise argparse.ArgumentTypeError(
                f"expected pipeline=load pairs separated by commas, such as a=10,b=4, got {part.strip()!r}"
            )
        if name in out:
            raise argparse.ArgumentTypeError(f"pipeline {name!r} has two loads; give each once")
        try:
            out[name] = load_rps(value.strip())
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{name}: {exc}") from None
    return out


def days(text: str) -> str:
    """Days of a trace, '0-9' or '12', checked now (the command parses them again where it uses them)."""
    from .forecasting.sources import parse_days

    try:
        parse_days(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def tracking_uri(text: str) -> str:
    """An MLflow tracking URI of a scheme MLflow can use (see settings.check_tracking_uri)."""
    from .settings import check_tracking_uri

    try:
        return check_tracking_uri(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def out_file(text: str) -> str:
    """A file the command will write: its folder must exist and be writable, and it must not be a folder.

    Checked before any work, so a long run does not end in 'No such file or directory'. The folder is not
    created: like a shell redirection, `curl -o` or `terraform plan -out`, a typo in the path should be
    refused, not turned into a new folder tree."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a folder; give a file name in it, e.g. {path / 'plan.json'}"
        )
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: folder {folder} does not exist (create it first: mkdir -p {folder})"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: folder {folder} is not writable")
    return text


def out_file_in_new_folder(text: str) -> str:
    """A file the command writes, creating its folder: the nearest existing folder above it must be
    writable, and the path must not be a folder (checked before any work, e.g. a long fetch)."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name in it")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: folder {folder} is not writable")
    return text


def name(text: str) -> str:
    """A name (a hardware, a registered model): not empty, no surrounding spaces, where an empty shell
    variable would otherwise file results under ''."""
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(f"expected a name without surrounding spaces, got {text!r}")
    return text
