"""Per-second request traces on disk: read (checked line by line on failure, decoded once and kept
as .npy under IPA_HOME). `sources` re-exports `read_trace`."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

from .errors import LoadSourceError


def read_trace(path: str | Path, *, damping: float = 1.0) -> np.ndarray:
    """One number per line = requests in that second (.txt or .txt.gz), divided by `damping`.

    Anything else is a LoadSourceError naming the file and, where one is to blame, its line: a cut
    `.gz`, a line that is not one number, a negative or non-finite count, or no count at all. A trace
    is what the forecasters learn load from, so a wrong number must never pass as load."""
    path = Path(path)
    if not (isinstance(damping, int | float | np.number) and math.isfinite(damping) and damping > 0):
        raise ValueError(f"damping must be a positive finite number, got {damping}")
    return _counts(path) / damping


def _counts(path: Path) -> np.ndarray:
    """The trace's counts, decoded once and kept as .npy under IPA_HOME: every forecast task of a
    replayed trace would otherwise parse two weeks of text (1.2 million lines) again."""
    from ..settings import load_settings

    try:
        st = path.stat()
    except OSError as exc:
        raise LoadSourceError(f"cannot read trace {path}: {exc}") from None
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    kept = load_settings().home / "cache" / "traces" / f"{key}.npy"
    try:
        return np.load(kept)
    except (OSError, ValueError):  # not kept yet, or a damaged file: parse the trace
        pass
    values = _parse(path)
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = kept.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, values)
        tmp.replace(kept)
    except OSError:  # a read-only home: parse again next time
        pass
    return values


def _parse(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty file; that is reported below
            values = np.loadtxt(fh, dtype=np.float64, ndmin=1)
    except EOFError:
        raise LoadSourceError(
            f"trace {path} is cut short: the gzip stream ends early (an interrupted download or copy); "
            "fetch or write it again"
        ) from None
    except (OSError, zlib.error) as exc:  # also gzip.BadGzipFile: a .gz name on something else
        raise LoadSourceError(f"cannot read trace {path}: {exc}") from None
    except ValueError:  # not a number, or not one per line: find the line to name
        raise LoadSourceError(_first_bad_line(path, opener)) from None
    if values.ndim != 1:
        raise LoadSourceError(_first_bad_line(path, opener))
    if values.size == 0:
        raise LoadSourceError(f"trace {path} is empty: it needs one request count per line, per second")
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise LoadSourceError(_first_bad_line(path, opener))
    return values


def _first_bad_line(path: Path, opener) -> str:
    """The first line of a trace that is not one finite, non-negative number, as an error message. Only
    called once the fast reader has refused the file, so the slow line-by-line scan costs nothing on a
    good trace."""
    try:
        with opener(path, "rt") as fh:
            for n, line in enumerate(fh, start=1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                fields = text.split()
                if len(fields) != 1:
                    return (
                        f"trace {path}, line {n}: {len(fields)} values ({text[:60]!r}); one number per line"
                    )
                try:
                    value = float(fields[0])
                except ValueError:
                    return f"trace {path}, line {n}: {fields[0][:60]!r} is not a number (one number per line)"
                if not math.isfinite(value) or value < 0:
                    return (
                        f"trace {path}, line {n}: {fields[0][:60]!r} is not a request count "
                        "(counts are finite and at least 0)"
                    )
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        return f"cannot read trace {path}: {exc}"
    return f"trace {path} is not one number per line"
