from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "profiles"
PIPELINES = PROFILES / "pipelines"


@pytest.fixture
def repo() -> Path:
    return REPO
