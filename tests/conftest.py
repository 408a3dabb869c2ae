import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "profiles"
PIPELINES = PROFILES / "pipelines"

# Airflow reads its home when first imported: give the whole session its own, with our DAGs.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="ipa-airflow-home-")
# Never a developer's own Airflow home: the tests migrate and write this database.
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")


@pytest.fixture
def repo() -> Path:
    return REPO


class FakeClock:
    """A clock that moves only when slept on: a loop's `clock` and `sleep` in tests, with no waiting."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s
