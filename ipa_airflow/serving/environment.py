"""Where MLServer is installed. It cannot share Airflow's environment (it requires FastAPI < 0.116), so it
lives in its own virtual environment: `.venv-serve` beside the checkout, made by `make serving-env` from
docker/model-server's pins (the same runtime the model-server image ships), or wherever IPA_MLSERVER
points (the `mlserver` executable of an environment the user made)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..settings import REPO

DEFAULT_ENV = REPO / ".venv-serve"


class ServingEnvError(RuntimeError):
    """No usable MLServer installation; the message says how to make one."""


def mlserver_executable(env: Mapping[str, str] | None = None) -> Path:
    """The `mlserver` command to start replicas with: IPA_MLSERVER, else .venv-serve/bin/mlserver."""
    env = os.environ if env is None else env
    given = env.get("IPA_MLSERVER") or ""
    path = Path(given) if given else DEFAULT_ENV / "bin" / "mlserver"
    if not path.is_file() or not os.access(path, os.X_OK):
        where = f"IPA_MLSERVER={given}" if given else str(path)
        raise ServingEnvError(
            f"MLServer is not installed at {where}. Run `make serving-env` in the ipa-airflow checkout "
            f"(it makes {DEFAULT_ENV.name}/ from docker/model-server/requirements.txt, about 6 GB with "
            "torch), or set IPA_MLSERVER to the `mlserver` executable of an environment with mlserver and "
            "mlserver-mlflow."
        )
    return path
