"""Kind runners. Kind `k` is the module `ipa_airflow.selfcheck.kinds.k`, imported when a case of that kind
runs (so a kind's dependencies, e.g. FastAPI for `webhook`, load only when needed). Each module has
`run(case: dict, workdir: pathlib.Path) -> (outcome, message)` and may have
`check(case: dict) -> list[(field, problem)]` for its own keys."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

Runner = Callable[[dict, Path], tuple[str, str]]


def runner_for(kind: str) -> Runner:
    return importlib.import_module(f"{__name__}.{kind}").run
