"""The documentation names every field a spec accepts, so the reference cannot fall behind the code."""

import re

import pytest

from ipa_airflow import spec as S
from tests.conftest import REPO

SECTIONS = {
    S.PipelineSpec: "Top level",
    S.Objective: "`objective`",
    S.Limits: "`limits`",
    S.Baselines: "`baselines`",
    S.Adaptation: "`adaptation`",
    S.DeploymentSettings: "`deployment`",
    S.Stage: "`stages[]`",
    S.Variant: "`stages[].variants[]`",
    S.Shape: "`shapes[]`",
}


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, f"docs/spec.md has no section '{title}'"
    return m.group(1)


@pytest.mark.parametrize("model", list(SECTIONS), ids=lambda m: m.__name__)
def test_every_spec_field_is_documented(model):
    section = _section((REPO / "docs" / "spec.md").read_text(), SECTIONS[model])
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.M))
    assert documented == set(model.model_fields), (
        f"fields of {model.__name__} missing from docs/spec.md: {set(model.model_fields) - documented}; "
        f"documented but gone: {documented - set(model.model_fields)}"
    )


def test_readme_links_resolve():
    text = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs|docker|profiles)/[^)#]+)", text):
        assert (REPO / target).exists(), f"README links to missing {target}"
